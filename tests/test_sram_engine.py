"""The SRAM-PIM engine beyond single units: NoC routes and contention, collectives,
signal/wait and deadlocks, the step-by-step interface for the central scheduler, results,
and the messages for programs the machine cannot run."""

import dataclasses
import re

import numpy as np
import pytest

from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.hardware.sram import NocTopology
from hpim_ir.sim.sram import (
    CTX,
    Affine,
    ProgramBuilder,
    SramEngine,
    SramOp,
    SramProgram,
    Space,
    VcuFn,
)
from hpim_ir.sim.sram.noc import Noc
from tests.sram_support import machine

SMALL = machine()


def with_buffers(cores=None, count: int = 3, size: int = 1024) -> ProgramBuilder:
    b = ProgramBuilder()
    for buf in range(count):
        b.add(SramOp.ALLOC, cores, kind=Space.AM, dst=buf, sizes=[size])
    return b


def spans(result) -> list[tuple[int, int, int]]:
    keep = ~np.isin(result.timeline["op"], (SramOp.ALLOC, SramOp.FREE))
    return [(int(c), int(s), int(e)) for c, s, e in result.timeline[keep][["core", "start", "end"]]]


# ---------------------------------------------------------------------------------------
# NoC: routes and two transfers sharing a link.


def test_mesh_routes_go_x_first() -> None:
    noc = Noc(SMALL.sram)  # 2 x 2: 0 1 / 2 3; a link is core * 4 + (0 E, 1 W, 2 S, 3 N)
    assert noc.route(0, 3) == (0 * 4 + 0, 1 * 4 + 2)  # east to 1, south to 3
    assert noc.route(3, 0) == (3 * 4 + 1, 2 * 4 + 3)  # west to 2, north to 0
    assert noc.route(1, 1) == ()


def test_ring_routes_take_the_shorter_way() -> None:
    data = machine(sram_noc={"topology": "ring", "mesh_cols": None})
    noc = Noc(data.sram)
    assert data.sram.noc.topology is NocTopology.RING
    assert noc.route(0, 1) == (0,)  # clockwise
    assert noc.route(0, 3) == (1,)  # counter-clockwise, one hop
    assert noc.route(1, 3) == (4, 8)  # a tie (2 hops either way) goes clockwise: 1 -> 2 -> 3


def test_two_transfers_sharing_a_link_serialize() -> None:
    noc = Noc(SMALL.sram)
    # 0 -> 3 (32 B: 4 cycles at 8 B/cycle) holds 0E and 1S during [0, 4): arrives 4 + 2 hops
    assert noc.transfer(0, 3, 4, 0) == 6
    # 0 -> 1 (16 B: 2 cycles) needs 0E too: starts at 4, arrives 4 + 2 + 1 = 7 (alone: 3)
    assert noc.transfer(0, 1, 2, 0) == 7
    # 2 -> 3 shares nothing: 0 + 2 + 1
    assert noc.transfer(2, 3, 2, 0) == 3
    # a gap before a later reservation is used when the transfer fits in it: 1S is free
    # until 0, busy [0, 4); 1 -> 3 requested at 10 finds it free
    assert noc.transfer(1, 3, 2, 10) == 13
    assert noc.busy_cycles == 4 * 2 + 2 + 2 + 2


def test_allgather_and_reduce_on_the_mesh() -> None:
    # 16 B = 2 cycles per link on the 2 x 2 mesh 0 1 / 2 3. allgather over 0..3: the ring
    # in boustrophedon order 0 -> 1 -> 3 -> 2 -> 0 (0E; 1S; 3W; 2N), one hop each, used
    # both ways: step 1 sends every block forward and backward (also 1W, 3N, 2E, 0S: eight
    # directed links, none shared), 2 + 1; step 2 sends the opposite block forward only,
    # 2 + 1; from cycle 2: 2 + 2 * 3 = 8. (One way round: 3 steps, 11; in core order,
    # 1 -> 2 and 3 -> 0 would take two hops: 2 + 3 * 4 = 14.)
    # reduce: step 1 (1 -> 0, 3 -> 2: one hop) 2 + 1, plus the add: 2 + ceil(8 / 8) = 3;
    # step 2 (2 -> 0: one hop) 3 + 3: from cycle 2, 2 + 6 + 6 = 14.
    assert Noc(SMALL.sram).ring(range(4)) == [0, 1, 3, 2]
    for op, end in ((SramOp.ALLGATHER, 8), (SramOp.REDUCE, 14)):
        b = with_buffers()
        b.add(op, None, dst=0, src0=1, sizes=[16])
        result = SramEngine(SMALL).run(b.build(), 0, timeline=True)
        assert spans(result) == [(core, 2, end) for core in range(4)]
        assert result.unit_busy["TRANSFER"] == (end - 2,) * 4


def test_the_allgather_ring_is_laid_on_the_mesh() -> None:
    noc = Noc(load_hardware("hpim").sram)  # a 4 x 8 mesh

    def hops(ring: list[int]) -> list[int]:
        return [len(noc.route(a, b)) for a, b in zip(ring, ring[1:] + ring[:1])]

    # All 32 cores (4 rows, even): a Hamiltonian cycle, every step one hop. Row 0 east,
    # rows 1-3 back and forth over columns 1-7, home up column 0.
    ring = noc.ring(range(32))
    assert ring[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 15, 14] and ring[-3:] == [24, 16, 8]
    assert sorted(ring) == list(range(32)) and hops(ring) == [1] * 32
    # 3 x 3 (odd both ways: no Hamiltonian cycle): rows back and forth, closing from the
    # last row's east end (2 + 2 hops).
    odd = Noc(machine(sram={"cores": 9}, sram_noc={"mesh_cols": 3}).sram)
    assert odd.ring(range(9)) == [0, 1, 2, 5, 4, 3, 6, 7, 8]
    # Within a row: out on even offsets, back on odd ones, at most 2 hops (core order
    # would close over 3).
    assert noc.ring(range(2, 6)) == [2, 4, 5, 3] and hops(noc.ring(range(2, 6))) == [2, 1, 2, 1]
    # A 3 x 4 mesh (odd rows, even columns): the transposed cycle, one hop a step: column
    # 0 south, columns 1-3 up and down over rows 1-2, home along row 0.
    wide = Noc(machine(sram={"cores": 12}, sram_noc={"mesh_cols": 4}).sram)
    ring = wide.ring(range(12))
    assert ring == [0, 4, 8, 9, 5, 6, 10, 11, 7, 3, 2, 1]
    assert all(len(wide.route(a, b)) == 1 for a, b in zip(ring, ring[1:] + ring[:1]))


def test_an_allgather_of_the_whole_mesh_goes_both_ways_round() -> None:
    # hpim's 4 x 8 mesh (32 B per link-cycle, 2 cycles a hop): 32 cores on the Hamiltonian
    # cycle, 64 B blocks (2 cycles). Every step's transfers are one hop on distinct directed
    # links, 2 + 2 cycles: 16 steps (15 both ways, the 16th the opposite block forward) take
    # 64 cycles; each core receives its 31 blocks, 16 from behind and 15 from ahead.
    hw = load_hardware("hpim")
    noc = Noc(hw.sram)
    steps = noc.gather_steps(range(32))
    assert [len(step) for step in steps] == [64] * 15 + [32]
    for step in steps:
        links = [link for sender, receiver in step for link in noc.route(sender, receiver)]
        assert len(links) == len(set(links)) == len(step)
    assert noc.collective(SramOp.ALLGATHER, range(32), 64, 100) == 100 + 16 * (2 + 2)
    # Three members gather in one step (each sends its block both ways); two in one.
    assert [len(step) for step in noc.gather_steps(range(3))] == [6]
    assert noc.gather_steps(range(2)) == [[(0, 1), (1, 0)]]


def test_concurrent_collectives_contend_for_a_shared_link() -> None:
    # A 2 x 3 mesh: 0 1 2 / 3 4 5. allgather over cores 0..1 (0E, 1W) and over cores 2..3
    # (2 -> 3: 2W 1W 0S; 3 -> 2: 3E 4E 5N) start together at cycle 2. The first holds 1W
    # during [2, 4) and ends at 2 + 2 + 1 = 5; the second's 2 -> 3 waits for 1W until 4 and
    # arrives at 4 + 2 + 3 = 9 (alone it would be 2 + 2 + 3 = 7).
    hw = machine(sram={"cores": 6}, sram_noc={"mesh_cols": 3})
    b = with_buffers()
    b.add(SramOp.ALLGATHER, (0, 2), dst=0, src0=1, sizes=[16])
    b.add(SramOp.ALLGATHER, (2, 4), dst=0, src0=1, sizes=[16])
    result = SramEngine(hw).run(b.build(), 0, timeline=True)
    assert spans(result) == [(0, 2, 5), (1, 2, 5), (2, 2, 9), (3, 2, 9)]
    b = with_buffers()
    b.add(SramOp.ALLGATHER, (2, 4), dst=0, src0=1, sizes=[16])
    assert spans(SramEngine(hw).run(b.build(), 0, timeline=True)) == [(2, 2, 7), (3, 2, 7)]


def test_a_collective_starts_when_its_last_member_arrives() -> None:
    # core 1 first runs a 10-cycle exp (2 -> 12) that writes the gathered buffer's source;
    # core 0 reaches the allgather at cycle 2 and waits; both start at 12: 0E, 1W, one step
    # of 2 + 1 = 15. Core 0's next instruction, independent of the gather, issues at 13.
    b = with_buffers(cores=(0, 2))
    b.add(SramOp.VCU, 1, kind=VcuFn.EXP, dst=1, src0=2, sizes=[16])
    b.add(SramOp.ALLGATHER, (0, 2), dst=0, src0=1, sizes=[16])
    b.add(SramOp.SCALAR, 0, sizes=[1])
    result = SramEngine(SMALL).run(b.build(), 0, timeline=True)
    assert spans(result) == [(0, 12, 15), (0, 13, 14), (1, 2, 12), (1, 12, 15)]


# ---------------------------------------------------------------------------------------
# Signal and wait.


def test_wait_holds_issue_until_the_token() -> None:
    b = with_buffers(0)
    b.add(SramOp.WAIT, 0, tok=5)
    b.add(SramOp.SCALAR, 0, sizes=[1])
    result = SramEngine(SMALL).run(b.build(), 0, tokens={5: 100}, timeline=True)
    assert spans(result) == [(0, 100, 100), (0, 101, 102)]


def test_signal_waits_for_every_core_and_everything_before() -> None:
    # core 0: exp of 16 (2 -> 12); core 1: exp of 32 (2 -> 2 + 2 + 16 = 20); the signal over
    # both is raised at 20 although each core issues it at 3; core 2 waits for it.
    b = with_buffers()
    b.add(SramOp.VCU, 0, kind=VcuFn.EXP, dst=0, src0=1, sizes=[16])
    b.add(SramOp.VCU, 1, kind=VcuFn.EXP, dst=0, src0=1, sizes=[32])
    b.add(SramOp.SIGNAL, (0, 2), tok=7)
    b.add(SramOp.SCALAR, (0, 2), sizes=[1])  # not held by the signal: issues at 4
    b.add(SramOp.WAIT, 2, tok=7)
    b.add(SramOp.SCALAR, 2, sizes=[1])
    result = SramEngine(SMALL).run(b.build(), 0, timeline=True)
    assert result.signals == {7: 20}
    assert spans(result)[-2:] == [(2, 20, 20), (2, 21, 22)]
    assert spans(result)[1:3] == [(0, 3, 3), (0, 4, 5)]


def test_a_wait_for_a_token_nothing_raises() -> None:
    b = with_buffers(0)
    b.add(SramOp.WAIT, 0, tok=3, line=4)
    with pytest.raises(
        HpimError,
        match=re.escape(
            "<program>:4: sram.wait tok=3 waits for a token that nothing raises (no sram.signal, "
            "and no other stream provides it)"
        ),
    ):
        SramEngine(SMALL).run(b.build(), 0)


def test_a_deadlock_names_the_waits_and_their_signals() -> None:
    b = ProgramBuilder()
    b.add(SramOp.WAIT, 0, tok=1, line=1)
    b.add(SramOp.SIGNAL, 0, tok=2, line=2)
    b.add(SramOp.WAIT, 1, tok=2, line=3)
    b.add(SramOp.SIGNAL, 1, tok=1, line=4)
    with pytest.raises(HpimError) as caught:
        SramEngine(SMALL).run(b.build(), 0)
    assert str(caught.value) == (
        "the SRAM-PIM program cannot finish (deadlock): core 0 waits at <program>:1 "
        "(sram.wait tok=1): its sram.signal at <program>:4 is never reached by every core of "
        "cores=1:2; core 1 waits at <program>:3 (sram.wait tok=2): its sram.signal at "
        "<program>:2 is never reached by every core of cores=0:1"
    )


# ---------------------------------------------------------------------------------------
# Driving the engine step by step, as the central scheduler does.


def attention_step() -> SramProgram:
    """Core 0 waits for q (token 1) from HBM-PIM, loads it, streams K in, softmax, stores;
    then signals token 2 back."""
    b = with_buffers(0)
    b.add(SramOp.WAIT, 0, tok=1)
    b.add(SramOp.LOAD, 0, dst=0, sizes=[16])
    b.add(SramOp.STREAM_MVM, 0, dst=1, src0=0, sizes=[8, CTX])
    b.add(SramOp.VCU, 0, kind=VcuFn.SOFTMAX, dst=1, src0=1, sizes=[CTX])
    b.add(SramOp.STORE, 0, src0=1, sizes=[CTX * 2])
    b.add(SramOp.SIGNAL, 0, tok=2)
    return b.build()


def test_the_step_interface_gives_the_same_result_as_a_run() -> None:
    engine = SramEngine(SMALL)
    simulation = engine.start(attention_step(), 64)
    assert not simulation.advance()
    assert simulation.waiting == {1: [0]} and simulation.raised == {}
    simulation.provide(1, 50)
    assert simulation.advance()
    whole = engine.run(attention_step(), 64, tokens={1: 50})
    assert simulation.result() == whole
    assert whole.signals == {2: whole.cycles}


def test_advance_stops_at_a_horizon() -> None:
    b = with_buffers(0)
    for _ in range(3):
        b.add(SramOp.LOAD, 0, dst=0, sizes=[640])  # each 10 + 10 cycles on the link
    simulation = SramEngine(SMALL).start(b.build(), 0)
    assert not simulation.advance(until=10)  # the second load is queued at 22 > 10
    assert simulation.now == 2
    with pytest.raises(HpimError, match="has not finished: advance it past cycle 2 first"):
        simulation.result()
    assert simulation.advance(until=100) and simulation.now == 42


def test_a_token_provided_after_its_cycle_has_passed_is_an_error() -> None:
    b = with_buffers((0, 2))
    b.add(SramOp.WAIT, 0, tok=1)
    b.add(SramOp.LOAD, 0, dst=0, sizes=[64])
    for _ in range(5):
        b.add(SramOp.LOAD, 1, dst=0, sizes=[64])
    simulation = SramEngine(SMALL).start(b.build(), 0)
    simulation.advance()  # core 1's loads run to cycle 2 + 4 * (1 + 10 + ...) > 10
    simulation.provide(1, 10)
    with pytest.raises(HpimError, match="a token was provided after advancing beyond"):
        simulation.advance()


def test_result_accounts_per_core_and_per_unit() -> None:
    result = SramEngine(SMALL).run(attention_step(), 64, tokens={1: 50})
    # the load: 1 link cycle; the stream of 8 x 64 = 128 slice-rows x 8 B = 1024 B: 16
    # cycles; the store of 128 B: 2
    assert result.link_busy == {"to_sram": 1 + 16, "to_hbm": 2}
    assert result.instructions == (6, 0, 0, 0)
    assert result.core_cycles[1:] == (0, 0, 0) and result.cycles == result.core_cycles[0]
    busy = result.unit_busy
    assert busy["TCU"] == (0, 0, 0, 0) and busy["VCU"][0] > 0 and busy["PIM"][0] > 0
    assert result.as_dict()["signals"] == {"2": result.cycles}
    assert result.ns == result.cycles  # 1 GHz


def test_an_empty_streamed_product_takes_no_time_and_moves_nothing() -> None:
    # Piece 3 of 4 of a slice of ctx + 1 keys streamed from HBM, ceil((ctx - 2) / 4) keys: at
    # ctx 2 it is empty and costs nothing (after the load before it, 1024 B: 16 link cycles);
    # at ctx 20 it streams 5 keys of 8 rows (8 x 1 slice-rows x 16 B = 128 B: 2 cycles).
    b = with_buffers(0, count=3)
    b.add(SramOp.LOAD, 0, dst=0, sizes=[1024])
    b.add(SramOp.STREAM_MVM, 0, dst=2, src0=1, sizes=[8, (CTX + 1).piece(3, 4)])
    empty = SramEngine(SMALL).run(b.build(), 2, timeline=True)
    load, product = empty.timeline[-2:]
    assert product["start"] == product["end"] == load["end"]
    assert empty.link_busy["to_sram"] == 16
    assert SramEngine(SMALL).run(b.build(), 20).link_busy["to_sram"] == 16 + 2


# ---------------------------------------------------------------------------------------
# Programs the machine cannot run: one message naming the record, the field and the value.


def error_of(build, hw=SMALL, ctx: int = 0) -> str:
    b = ProgramBuilder()
    build(b)
    with pytest.raises(HpimError) as caught:
        SramEngine(hw).run(b.build(), ctx)
    return str(caught.value)


@pytest.mark.parametrize(
    "build, expected",
    [
        (
            lambda b: b.add(SramOp.SCALAR, (2, 5), sizes=[1], line=3),
            "<program>:3: sram.scalar cores=2:5 is out of range: small has 4 cores (0..3; the "
            "range is half-open)",
        ),
        (
            lambda b: b.add(SramOp.VCU, 0, kind=12, dst=0, src0=0, sizes=[1]),
            "<program>: record 0: sram.vcu function 12 is unknown (0..11: exp, max, sum",
        ),
        (
            lambda b: b.add(SramOp.SCALAR, 0, sizes=[CTX - 10], line=2),
            "<program>:2: sram.scalar n=ctx - 10 is -2 at ctx=8: must be at least 1",
        ),
        (  # a streamed product may be empty, never negative
            lambda b: b.add(SramOp.ALLOC, 0, kind=Space.AM, dst=0, sizes=[64]).add(
                SramOp.STREAM_MVM, 0, dst=0, src0=0, sizes=[4, CTX - 10]
            ),
            "sram.stream_mvm cols=ctx - 10 is -2 at ctx=8: must be at least 0",
        ),
        (
            lambda b: b.add(SramOp.SCALAR, 0, sizes=[1, 4]),
            "sram.scalar has no size 1 (a1, b1, d1 must be 0, 0, 1); its sizes are n",
        ),
        (
            lambda b: b.add(SramOp.LOAD, 0, sizes=[4]),
            "sram.load dst=-1: is required: a buffer number, at least 0",
        ),
        (
            lambda b: b.add(SramOp.STORE, 0, dst=1, src0=0, sizes=[4]),
            "sram.store dst=1: must be -1 (no such operand)",
        ),
        (
            lambda b: b.add(SramOp.SIGNAL, 0, tok=-3),
            "sram.signal tok=-3: a token is at least 0",
        ),
        (
            lambda b: b.add(SramOp.SCALAR, 0, tok=3, sizes=[1]),
            "sram.scalar tok=3: only signal and wait take a token",
        ),
        (
            lambda b: b.add(SramOp.SIGNAL, 0, tok=1, line=1).add(SramOp.SIGNAL, 1, tok=1, line=5),
            "<program>:5: sram.signal tok=1: the token is already raised by <program>:1",
        ),
        (
            lambda b: b.add(SramOp.LOAD, 1, dst=4, sizes=[4], line=9),
            "<program>:9: core 1: sram.load dst=4: buffer 4 is not live",
        ),
        (
            lambda b: b.add(SramOp.ALLOC, 0, kind=Space.PIM, dst=4, sizes=[4, 4]).add(
                SramOp.LOAD, 0, dst=4, sizes=[4]
            ),
            "core 0: sram.load dst=4: buffer 4 is in PIM macros; this operand must be in "
            "activation memory",
        ),
        (
            lambda b: b.add(SramOp.ALLOC, 0, kind=Space.AM, dst=4, sizes=[CTX]).add(
                SramOp.LOAD, 0, dst=4, sizes=[CTX * 2]
            ),
            "core 0: sram.load dst=4 moves 16 bytes at ctx=8; buffer 4 has 8",
        ),
        (
            lambda b: b.add(SramOp.ALLOC, None, kind=Space.AM, dst=4, sizes=[64]).add(
                SramOp.ALLGATHER, None, dst=4, src0=4, sizes=[32]
            ),
            "core 0: sram.allgather dst=4 moves 128 bytes at ctx=8; buffer 4 has 64",
        ),
        (
            lambda b: b.add(SramOp.ALLOC, 0, kind=Space.PIM, dst=4, sizes=[8, CTX])
            .add(SramOp.ALLOC, 0, kind=Space.AM, dst=5, sizes=[64])
            .add(SramOp.MVM, 0, dst=5, src0=5, src1=4, sizes=[8, CTX + 1]),
            "core 0: sram.mvm src1=4 rows=8 cols=9 at ctx=8; PIM buffer 4 is 8 x 8",
        ),
        (
            lambda b: b.add(SramOp.ALLOC, 0, kind=Space.AM, dst=4, sizes=[8]).add(
                SramOp.ALLOC, 0, kind=Space.AM, dst=4, sizes=[8], line=6
            ),
            "<program>:6: core 0: sram.alloc dst=4: buffer 4 is already live",
        ),
        (
            lambda b: b.add(SramOp.FREE, 2, dst=4),
            "core 2: sram.free dst=4: buffer 4 is not live",
        ),
    ],
)
def test_bad_programs_are_named(build, expected: str) -> None:
    assert expected in error_of(build, ctx=8)


def test_streaming_needs_the_kv_cache_in_hbm() -> None:
    kv_in_sram = machine(sram={"kv_cache": "sram"})
    message = error_of(
        lambda b: b.add(SramOp.ALLOC, 0, kind=Space.AM, dst=0, sizes=[64]).add(
            SramOp.STREAM_MVM, 0, dst=0, src0=0, sizes=[4, 4]
        ),
        hw=kv_in_sram,
    )
    assert (
        "sram.stream_mvm streams the KV cache from HBM, but this machine keeps it in SRAM"
        in message
    )


def test_bad_context_and_hardware() -> None:
    with pytest.raises(HpimError, match="context length -1: must be a non-negative integer"):
        SramEngine(SMALL).run(ProgramBuilder().build(), -1)
    with pytest.raises(HpimError, match=r"hardware 'small' has no SRAM-PIM subsystem \(\[sram\]"):
        SramEngine(dataclasses.replace(SMALL, sram=None))


def test_sizes_print_in_one_exact_form() -> None:
    # the form the sram_isa dialect and the messages show
    shown = [CTX * 256, CTX + 1, (CTX + 1).ceildiv(4), Affine.of(64), Affine(0, 5, 2), CTX - 10]
    assert [str(size) for size in shown] == [
        "256*ctx",
        "ctx + 1",
        "ceildiv(ctx + 1, 4)",
        "64",
        "ceildiv(0*ctx + 5, 2)",
        "ctx - 10",
    ]
    with pytest.raises(TypeError, match="cannot be scaled exactly"):
        (CTX + 1).ceildiv(2) * 3


def test_an_empty_program_takes_no_time() -> None:
    result = SramEngine(SMALL).run(ProgramBuilder().build(), 0)
    assert result.cycles == 0 and result.instructions == (0, 0, 0, 0)
