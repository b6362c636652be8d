"""Each timing rule of the SRAM-PIM engine against a hand-derived cycle count.

The machine is `tests/sram_support.SMALL_MACHINE`: a 3-stage pipeline (the first
instruction dispatches at cycle 2), a 4 x 4 TCU, an 8-lane VCU with 2 cycles of latency per
pass, 4 macros of 8 x 8 FP16 with 4 multipliers (L = 4, P = 4), a 16 B/cycle macro write
port, a 64 B/cycle link with 10 cycles of latency, a 2 x 2 mesh of 8 B/cycle links.
Programs run on core 0 unless a test says otherwise; `alloc` takes no issue slot.
"""

import pytest

from hpim_ir.errors import HpimError
from hpim_ir.sim.sram import CTX, ProgramBuilder, SramEngine, SramOp, Space, VcuFn
from tests.sram_support import machine

SMALL = machine()
FIRST = 2  # pipeline_stages - 1


def builder(pim: tuple[int, int] | None = None, cores=0) -> ProgramBuilder:
    """Buffers 0..3 of 1 KiB in activation memory, and PIM buffer 9 of `pim` = (rows, cols)."""
    b = ProgramBuilder()
    for buf in range(4):
        b.add(SramOp.ALLOC, cores, kind=Space.AM, dst=buf, sizes=[1024])
    if pim is not None:
        b.add(SramOp.ALLOC, cores, kind=Space.PIM, dst=9, sizes=list(pim))
    return b


def spans(b: ProgramBuilder, hw=SMALL, ctx: int = 0, tokens=None) -> list[tuple[int, int, int]]:
    """(core, start, end) of every non-declaration instruction, in core and program order."""
    result = SramEngine(hw).run(b.build(), ctx, tokens=tokens, timeline=True)
    keep = ~((result.timeline["op"] == SramOp.ALLOC) | (result.timeline["op"] == SramOp.FREE))
    return [(int(c), int(s), int(e)) for c, s, e in result.timeline[keep][["core", "start", "end"]]]


def one(op: SramOp, sizes: list, kind: int = 0, hw=SMALL, pim=None, **operands) -> int:
    """Cycles of one instruction on core 0 (completion - dispatch; dispatch is cycle 2)."""
    b = builder(pim)
    b.add(op, 0, kind=kind, sizes=sizes, **operands)
    [(_, start, end)] = spans(b, hw)
    assert start == FIRST
    return end - start


# ---------------------------------------------------------------------------------------
# TCU: R + F * max(M, R) + R + C - 2 with F = ceil(K / R) * ceil(N / C), R = C = 4.


@pytest.mark.parametrize(
    "m, n, k, cycles",
    [
        (4, 4, 4, 14),  # one fold: 4 + 4 + 6; SCALE-Sim's 2R + C + M - 2 = 8 + 4 + 4 - 2
        (10, 4, 4, 20),  # one fold, 10 rows: 4 + 10 + 6
        (2, 8, 8, 26),  # 2 x 2 folds, each waits for its weights: 4 + 4 * max(2, 4) + 6
        (9, 5, 3, 28),  # K < R pads one fold row-wise, N = 5 needs 2 column folds: 4 + 18 + 6
        (1, 1, 1, 14),  # one MAC still loads, fills and drains the array: 4 + max(1, 4) + 6
    ],
)
def test_tcu_fill_and_drain(m: int, n: int, k: int, cycles: int) -> None:
    assert one(SramOp.GEMM, [m, n, k], dst=0, src0=1, src1=2) == cycles


# ---------------------------------------------------------------------------------------
# VCU: each pass costs latency (2) + ceil(elements / rate); rates: element-wise and
# reduce 8, exp 2, GELU 4, SiLU 2, rsqrt 1 per cycle.

N16 = {
    VcuFn.EXP: 2 + 8,
    VcuFn.MAX: 2 + 2,
    VcuFn.SUM: 2 + 2,
    VcuFn.SOFTMAX: (2 + 2) + (2 + 8) + (2 + 1) + (2 + 2),  # max, exp, 1/sum, scale = 21
    VcuFn.LAYERNORM: (2 + 2) * 2 + (2 + 1) + (2 + 2) * 2,  # mean, var, rsqrt, 2 FMAs = 19
    VcuFn.RMSNORM: (2 + 2) + (2 + 1) + (2 + 2) * 2,  # sum of squares, rsqrt, 2 muls = 15
    VcuFn.GELU: 2 + 4,
    VcuFn.RELU: 2 + 2,
    VcuFn.SILU: 2 + 8,
    VcuFn.MUL: 2 + 2,
    VcuFn.ADD: 2 + 2,
    VcuFn.ROPE: (2 + 2) * 2,  # x * cos, then the FMA with rotate_half(x) * sin
}


@pytest.mark.parametrize("fn", list(VcuFn))
def test_vcu_costs_per_function(fn: VcuFn) -> None:
    assert one(SramOp.VCU, [16], kind=fn, dst=0, src0=1, src1=2) == N16[fn]


def test_vcu_rounds_each_pass_up() -> None:
    # 17 elements: exp 2 + ceil(17 / 2) = 11; softmax (2 + 3) + (2 + 9) + (2 + 1) + (2 + 3) = 24
    assert one(SramOp.VCU, [17], kind=VcuFn.EXP, dst=0, src0=1) == 11
    assert one(SramOp.VCU, [17], kind=VcuFn.SOFTMAX, dst=0, src0=1) == 24


# ---------------------------------------------------------------------------------------
# PIM unit: an R x C matrix is R * ceil(C / 4) slice-rows dealt over 4 macros, one per
# cycle each: MVM = 3 + ceil(slice-rows / 4); write = ceil(slice-rows * 8 B / 16 B).


@pytest.mark.parametrize(
    "rows, cols, cycles",
    [
        (8, 8, 3 + 4),  # 16 slice-rows fill the 4 macros' lanes: 4 cycles
        (8, 6, 3 + 4),  # the second slice has 2 of 4 lanes busy: still 16 slice-rows
        (2, 4, 3 + 1),  # 2 slice-rows: 2 of 4 macros idle, one cycle
        (5, 3, 3 + 2),  # 5 slice-rows over 4 macros: 2 cycles, 3 macros idle in the second
        (16, 16, 3 + 16),  # the whole unit (256 values): 64 slice-rows, 16 cycles
    ],
)
def test_pim_mvm(rows: int, cols: int, cycles: int) -> None:
    assert one(SramOp.MVM, [rows, cols], pim=(rows, cols), dst=0, src0=1, src1=9) == cycles


@pytest.mark.parametrize(
    "rows, cols, cycles",
    [
        (8, 8, 8),  # 16 slice-rows x 8 B = 128 B at 16 B/cycle
        (8, 1, 4),  # a column: 8 slice-rows, each written whole (64 B, not 16 B)
        (3, 5, 3),  # 3 x 2 slice-rows = 48 B
        (16, 16, 32),  # 512 B: the whole unit
    ],
)
def test_macro_write(rows: int, cols: int, cycles: int) -> None:
    assert one(SramOp.MACRO_WRITE, [rows, cols], pim=(rows, cols), dst=9, src0=0) == cycles


def test_streamed_mvm_in_chunks() -> None:
    # Half the unit (2 macros x 16 slice-rows = 32 slice-rows, 256 B) per chunk; 8 x 32 is
    # 64 slice-rows = 2 chunks. From the link start (cycle 2), with w = 256 / 16 = 16 and
    # c = 32 / 2 = 16 per chunk:
    #   chunk 0 arrives at 10 + 256 / 64 = 14; written at max(10 + 16, 14) = 26; computed 42
    #   chunk 1 arrives at 10 + 512 / 64 = 18; written at max(26 + 16, 18) = 42;
    #   computed at max(42, 42) + 16 = 58; the result 3 cycles later: 61.
    assert one(SramOp.STREAM_MVM, [8, 32], dst=0, src0=1) == 61
    # a third chunk (arrived at 10 + 768 / 64 = 22) is written once chunk 1 is written (42)
    # and chunk 0, the previous occupant of its half, is computed (42): written at
    # 42 + 16 = 58, computed at max(58, 58) + 16 = 74, result 77: one max(w, c) more.
    assert one(SramOp.STREAM_MVM, [8, 48], dst=0, src0=1) == 77
    # one small chunk: 4 x 8 = 8 slice-rows (64 B) arrive at 11, written max(10 + 4, 11) = 14,
    # computed by 2 macros in 4 cycles (18), result at 21
    assert one(SramOp.STREAM_MVM, [4, 8], dst=0, src0=1) == 21


def test_streamed_mvm_bound_by_the_link() -> None:
    # at 8 GB/s (8 B/cycle) the link paces the chunks: chunk 0 arrives at 10 + 256 / 8 = 42
    # (written 42, computed 58), chunk 1 at 10 + 512 / 8 = 74 (written 74, computed 90): 93
    slow = machine(link={"bandwidth_gbs": 8})
    assert one(SramOp.STREAM_MVM, [8, 32], hw=slow, dst=0, src0=1) == 93


def test_pim_capacity() -> None:
    # 16 x 17 needs 16 x 5 slice-rows x 8 B = 640 B; the macros hold 4 x 64 x 2 B = 512 B
    b = builder()
    b.add(SramOp.ALLOC, 0, kind=Space.PIM, dst=9, sizes=[16, 17])
    with pytest.raises(HpimError) as caught:
        SramEngine(SMALL).run(b.build(), 0)
    assert str(caught.value) == (
        "<program>: record 4: core 0: PIM macros overflow at ctx=0: the live buffers need "
        "640 bytes, 512 available (9: 640 B)"
    )


# ---------------------------------------------------------------------------------------
# Transpose, SCU.


def test_transpose_and_scalar() -> None:
    # 2 + ceil(4 x 8 / 4) = 10; 2 + ceil(7 / 4) = 4; the SCU does one operation per cycle
    assert one(SramOp.TRANSPOSE, [4, 8], dst=0, src0=1) == 10
    assert one(SramOp.TRANSPOSE, [1, 7], dst=0, src0=1) == 4
    assert one(SramOp.SCALAR, [5]) == 5


# ---------------------------------------------------------------------------------------
# The link: ceil(bytes / 64) cycles on the shared path, then 10 cycles of latency.


def test_link_bandwidth_latency_and_contention() -> None:
    b = builder(cores=(0, 3))
    b.add(SramOp.LOAD, (0, 2), dst=0, sizes=[640])  # cores 0 and 1 load 640 B at cycle 2
    b.add(SramOp.STORE, 2, src0=0, sizes=[640])  # core 2 stores: the other direction
    # core 0: 2 + 640 / 64 + 10 = 22; core 1 waits for the link until 12: 12 + 10 + 10 = 32;
    # core 2's store does not contend with loads: 22
    assert spans(b) == [(0, 2, 22), (1, 2, 32), (2, 2, 22)]
    # one byte still takes a cycle: 2 + 1 + 10
    assert one(SramOp.LOAD, [1], dst=0) == 11


def test_link_rates_that_are_not_whole_bytes_per_cycle() -> None:
    # 100 GB/s at 300 MHz is 1000/3 B/cycle: 1000 B take ceil(3) = 3 cycles; 10 ns is
    # ceil(3.0) = 3 cycles: the load completes 6 cycles after dispatch
    odd = machine(sram={"clock_mhz": 300}, link={"bandwidth_gbs": 100})
    assert one(SramOp.LOAD, [1000], hw=odd, dst=0) == 6
    assert one(SramOp.LOAD, [1001], hw=odd, dst=0) == 7


# ---------------------------------------------------------------------------------------
# The issue pipeline.


def test_the_first_instruction_waits_for_the_pipeline() -> None:
    deep = machine(sram={"pipeline_stages": 5})
    b = builder()
    b.add(SramOp.SCALAR, 0, sizes=[1])
    assert spans(b, deep) == [(0, 4, 5)]  # fetch and 3 more stages before execute


def test_one_issue_per_cycle_and_units_overlap() -> None:
    b = builder()
    for _ in range(6):
        b.add(SramOp.SCALAR, 0, sizes=[1])
    # the SCU finishes each in one cycle: one per cycle from cycle 2
    assert spans(b) == [(0, 2 + k, 3 + k) for k in range(6)]
    b = builder()
    b.add(SramOp.VCU, 0, kind=VcuFn.EXP, dst=0, src0=0, sizes=[16])  # 10 cycles
    b.add(SramOp.TRANSPOSE, 0, dst=1, src0=2, sizes=[4, 8])  # 10 cycles
    b.add(SramOp.SCALAR, 0, sizes=[5])
    b.add(SramOp.VCU, 0, kind=VcuFn.EXP, dst=3, src0=3, sizes=[16])  # the VCU is busy until 12
    b.add(SramOp.SCALAR, 0, sizes=[1])  # independent, but issue is in order
    assert spans(b) == [(0, 2, 12), (0, 3, 13), (0, 4, 9), (0, 12, 22), (0, 13, 14)]


# ---------------------------------------------------------------------------------------
# Dependencies through buffers: read after write, write after read, write after write.


@pytest.mark.parametrize(
    "second, start",
    [
        (dict(op=SramOp.SCALAR, src0=1, sizes=[1]), 12),  # reads 1, written until 12
        (dict(op=SramOp.TRANSPOSE, dst=0, src0=2, sizes=[4, 8]), 12),  # writes 0, read until 12
        (dict(op=SramOp.SCALAR, dst=1, sizes=[1]), 12),  # writes 1, written until 12
        (dict(op=SramOp.TRANSPOSE, dst=2, src0=2, sizes=[4, 8]), 3),  # independent: next cycle
    ],
)
def test_dependency_stalls(second: dict, start: int) -> None:
    b = builder()
    b.add(SramOp.VCU, 0, kind=VcuFn.EXP, dst=1, src0=0, sizes=[16])  # 2 -> 12
    b.add(second.pop("op"), 0, **second)
    b.add(SramOp.SCALAR, 0, sizes=[1])  # stalls behind a stalled instruction
    first, (_, begin, _), (_, after, _) = spans(b)
    assert first == (0, 2, 12) and begin == start and after == start + 1


def test_barrier_waits_for_everything_before_it() -> None:
    b = builder()
    b.add(SramOp.VCU, 0, kind=VcuFn.EXP, dst=1, src0=0, sizes=[16])  # 2 -> 12
    b.add(SramOp.BARRIER, 0)
    b.add(SramOp.SCALAR, 0, sizes=[1])
    assert spans(b) == [(0, 2, 12), (0, 12, 12), (0, 13, 14)]


def test_free_and_realloc_reuse_the_space_and_keep_the_order() -> None:
    b = ProgramBuilder()
    b.add(SramOp.ALLOC, 0, kind=Space.AM, dst=0, sizes=[3000])
    b.add(SramOp.VCU, 0, kind=VcuFn.EXP, dst=0, src0=0, sizes=[16])  # 2 -> 12
    b.add(SramOp.FREE, 0, dst=0)
    b.add(SramOp.ALLOC, 0, kind=Space.AM, dst=0, sizes=[3000])  # fits again: 3000 <= 4096
    b.add(SramOp.SCALAR, 0, dst=0, sizes=[1])  # buffer number 0 again: after the exp
    assert spans(b) == [(0, 2, 12), (0, 12, 13)]


# ---------------------------------------------------------------------------------------
# Activation memory: the live buffers of a core against its 4096 bytes, at each ctx.


def test_activation_memory_overflow_names_the_core_and_the_bytes() -> None:
    b = ProgramBuilder()
    b.add(SramOp.ALLOC, (1, 3), kind=Space.AM, dst=0, sizes=[96])
    b.add(SramOp.ALLOC, (1, 3), kind=Space.AM, dst=4, sizes=[CTX * 2], line=7)
    b.add(SramOp.VCU, (1, 3), kind=VcuFn.SOFTMAX, dst=4, src0=4, sizes=[CTX])
    engine = SramEngine(SMALL)
    engine.run(b.build(), 2000)  # 96 + 4000 bytes fit
    with pytest.raises(HpimError) as caught:
        engine.run(b.build(), 2001)
    assert str(caught.value) == (
        "<program>:7: core 1: activation memory overflow at ctx=2001: the live buffers need "
        "4098 bytes, 4096 available (0: 96 B, 4: 4002 B)"
    )
