"""Properties of the SRAM-PIM engine over random inputs: attention time is affine in the
context length for a fixed tiling, never shrinks when more cores share the link, and the
event-driven engine agrees cycle for cycle with the time-stepped reference
(`tests/sram_support.reference`) on random programs."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from tests.sram_support import machine, reference

SMALL = machine()
# Room for a resident KV cache: 4 macros of 64 x 64 (32 KiB) and 64 KiB of activation memory.
ROOMY = machine(
    sram={"activation_memory_bytes": 65536, "kv_cache": "sram"},
    sram_pim={"macro_rows": 64, "macro_cols": 64},
)


def attention(head_dim: int, resident: bool, cores=0) -> SramProgram:
    """One decode step of one head per core: q . K^T, softmax, s . V.

    Streamed (KV in HBM): load q; stream K^T in and multiply; softmax; stream V in and
    multiply; store the output. Resident (KV in SRAM): K^T (d x ctx+1) and V (ctx+1 x d)
    live in the macros; load q, k and v of the new token; transpose k; append k to K^T and
    v to V; multiply, softmax, multiply; store."""
    b = ProgramBuilder()
    row = 2 * head_dim
    for buf, size in ((0, row), (1, (CTX + 1) * 2), (2, row), (3, row), (4, row)):
        b.add(SramOp.ALLOC, cores, kind=Space.AM, dst=buf, sizes=[size])
    b.add(SramOp.LOAD, cores, dst=0, sizes=[row])
    if resident:
        b.add(SramOp.ALLOC, cores, kind=Space.PIM, dst=8, sizes=[head_dim, CTX + 1])
        b.add(SramOp.ALLOC, cores, kind=Space.PIM, dst=9, sizes=[CTX + 1, head_dim])
        b.add(SramOp.LOAD, cores, dst=3, sizes=[row])
        b.add(SramOp.LOAD, cores, dst=4, sizes=[row])
        b.add(SramOp.TRANSPOSE, cores, dst=3, src0=3, sizes=[1, head_dim])
        b.add(SramOp.MACRO_WRITE, cores, dst=8, src0=3, sizes=[head_dim, 1])
        b.add(SramOp.MACRO_WRITE, cores, dst=9, src0=4, sizes=[1, head_dim])
        b.add(SramOp.MVM, cores, dst=1, src0=0, src1=8, sizes=[head_dim, CTX + 1])
    else:
        b.add(SramOp.STREAM_MVM, cores, dst=1, src0=0, sizes=[head_dim, CTX + 1])
    b.add(SramOp.VCU, cores, kind=VcuFn.SOFTMAX, dst=1, src0=1, sizes=[CTX + 1])
    if resident:
        b.add(SramOp.MVM, cores, dst=2, src0=1, src1=9, sizes=[CTX + 1, head_dim])
    else:
        b.add(SramOp.STREAM_MVM, cores, dst=2, src0=1, sizes=[CTX + 1, head_dim])
    b.add(SramOp.STORE, cores, src0=2, sizes=[row])
    return b.build()


@settings(max_examples=40, deadline=None)
@given(
    head_dim=st.sampled_from([4, 8, 16]),
    resident=st.booleans(),
    first=st.integers(1, 4),
)
def test_attention_cycles_are_affine_in_the_context(
    head_dim: int, resident: bool, first: int
) -> None:
    # A fixed tiling: ctx + 1 a multiple of 128 (streamed: every chunk of 32 slice-rows full,
    # every link transfer a whole number of 64 B cycles; resident: every slice and macro
    # round full). Then each step of the context adds the same cycles.
    hw = ROOMY if resident else SMALL
    step = 16 if resident else 128
    engine = SramEngine(hw)
    program = attention(head_dim, resident)
    cycles = [engine.run(program, k * step - 1).cycles for k in (first, first + 1, first + 2)]
    assert cycles[1] - cycles[0] == cycles[2] - cycles[1] > 0


@settings(max_examples=30, deadline=None)
@given(head_dim=st.sampled_from([4, 8, 16]), ctx=st.integers(1, 300))
def test_attention_never_gets_faster_when_more_cores_share_the_link(
    head_dim: int, ctx: int
) -> None:
    # cores 0..k-1 each run a head at once; their loads and streams share the link, so
    # adding a core never makes the step, or any core already there, finish earlier
    engine = SramEngine(SMALL)
    previous = None
    for k in range(1, 5):
        result = engine.run(attention(head_dim, False, cores=(0, k)), ctx)
        if previous is not None:
            assert result.cycles >= previous.cycles
            assert all(
                now >= before
                for now, before in zip(result.core_cycles, previous.core_cycles[: k - 1])
            )
        previous = result


# ---------------------------------------------------------------------------------------
# Random programs: the engine against the time-stepped reference.

CORE_RANGES = st.one_of(
    st.none(), st.tuples(st.integers(0, 3), st.integers(1, 4)).filter(lambda r: r[0] < r[1])
)
AM = st.integers(0, 3)


@st.composite
def programs(draw) -> tuple[SramProgram, dict[int, int]]:
    b = ProgramBuilder()
    for buf in range(4):
        b.add(SramOp.ALLOC, None, kind=Space.AM, dst=buf, sizes=[512])
    b.add(SramOp.ALLOC, None, kind=Space.PIM, dst=9, sizes=[8, 8])
    provided = draw(st.dictionaries(st.integers(100, 103), st.integers(0, 300), max_size=3))
    raised: list[int] = list(provided)
    for _ in range(draw(st.integers(1, 24))):
        cores = draw(CORE_RANGES)
        kind = draw(st.sampled_from(list(SramOp)[:14]))
        if kind in (SramOp.ALLOC, SramOp.FREE):
            continue
        if kind == SramOp.SIGNAL:
            token = len(raised)
            raised.append(token)
            b.add(kind, cores, tok=token)
        elif kind == SramOp.WAIT:
            if raised:
                b.add(kind, cores, tok=draw(st.sampled_from(raised)))
        elif kind == SramOp.BARRIER:
            b.add(kind, cores)
        elif kind == SramOp.SCALAR:
            b.add(kind, cores, dst=draw(st.integers(-1, 3)), sizes=[draw(st.integers(1, 6))])
        elif kind == SramOp.VCU:
            b.add(
                kind,
                cores,
                kind=draw(st.sampled_from(list(VcuFn))),
                dst=draw(AM),
                src0=draw(AM),
                src1=draw(st.integers(-1, 3)),
                sizes=[draw(st.integers(1, 32))],
            )
        elif kind in (SramOp.LOAD, SramOp.STORE):
            operand = {"dst": draw(AM)} if kind == SramOp.LOAD else {"src0": draw(AM)}
            b.add(kind, cores, sizes=[draw(st.integers(1, 256))], **operand)
        elif kind in (SramOp.ALLGATHER, SramOp.REDUCE):
            b.add(kind, cores, dst=draw(AM), src0=draw(AM), sizes=[draw(st.integers(1, 128))])
        elif kind == SramOp.GEMM:
            dims = [draw(st.integers(1, 6)) for _ in range(3)]
            b.add(kind, cores, dst=draw(AM), src0=draw(AM), src1=draw(AM), sizes=dims)
        else:  # transpose, the PIM unit
            shape = [draw(st.integers(1, 8)), draw(st.integers(1, 8))]
            if kind == SramOp.STREAM_MVM:
                shape[1] = draw(st.integers(1, 16))
            operands = {
                SramOp.MACRO_WRITE: {"dst": 9, "src0": draw(AM)},
                SramOp.MVM: {"dst": draw(AM), "src0": draw(AM), "src1": 9},
            }.get(kind, {"dst": draw(AM), "src0": draw(AM)})
            b.add(kind, cores, sizes=shape, **operands)
    return b.build(), provided


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_the_engine_agrees_with_the_time_stepped_reference(case) -> None:
    program, provided = case
    result = SramEngine(SMALL).run(program, 0, tokens=provided, timeline=True)
    times, raised = reference(program, SMALL, 0, provided)
    engine_times = list(zip(result.timeline["start"].tolist(), result.timeline["end"].tolist()))
    assert engine_times == times
    assert result.signals == raised
    assert result.cycles == max((end for _, end in times), default=0)
    ends = np.zeros(4, dtype=np.int64)
    np.maximum.at(ends, result.timeline["core"], result.timeline["end"])
    assert result.core_cycles == tuple(ends.tolist())


# ---------------------------------------------------------------------------------------
# Sizes: the arithmetic that builds them is exact.


@given(
    a=st.integers(-50, 50),
    b=st.integers(-1000, 1000),
    scale=st.integers(-5, 5),
    divisor=st.integers(1, 9),
    shift=st.integers(-100, 100),
    ctx=st.integers(0, 10_000),
)
def test_affine_sizes_compose_exactly(a, b, scale, divisor, shift, ctx) -> None:
    size = ((Affine(a, b) * scale).ceildiv(divisor) + shift) - 3
    expected = -(-((a * ctx + b) * scale) // divisor) + shift - 3
    assert size(ctx) == expected


@given(
    a=st.integers(0, 50),
    b=st.integers(0, 1000),
    d=st.integers(1, 9),
    pieces=st.integers(1, 8),
    ctx=st.integers(0, 10_000),
)
def test_pieces_of_a_size_add_up_to_it(a, b, d, pieces, ctx) -> None:
    # A streamed context's pieces (convert-pim-to-isa): piece i takes every `pieces`-th unit
    # of the size from unit i on, so the pieces are never negative and add up to the size.
    size = Affine(a, b, d)
    split = [size.piece(i, pieces)(ctx) for i in range(pieces)]
    assert split == [len(range(i, size(ctx), pieces)) for i in range(pieces)]
    assert sum(split) == size(ctx)


@given(rows=st.integers(1, 6), cols=st.integers(1, 8), data=st.data())
@settings(deadline=None)
def test_the_allgather_ring_is_a_short_cycle_of_its_members(rows: int, cols: int, data) -> None:
    # `Noc.ring` on any mesh and any range of cores: a cycle through every member once. On
    # whole rows, at least two of them, with an even side (a Hamiltonian cycle exists)
    # every step is one hop; on a line (one row, one column) at most two; never longer
    # than the mesh's diameter.
    cores = rows * cols
    noc = Noc(machine(sram={"cores": cores}, sram_noc={"mesh_cols": cols}).sram)
    lo = data.draw(st.integers(0, cores - 1))
    hi = data.draw(st.integers(lo + 1, cores))
    members = range(lo, hi)
    ring = noc.ring(members)
    assert sorted(ring) == list(members)
    hops = [len(noc.route(a, b)) for a, b in zip(ring, ring[1:] + ring[:1])]
    assert max(hops) <= rows - 1 + cols - 1
    spanned = -(-hi // cols) - lo // cols
    whole_rows = lo % cols == 0 and len(members) == spanned * cols
    if whole_rows and spanned > 1 and cols > 1 and (spanned % 2 == 0 or cols % 2 == 0):
        assert max(hops) == 1
    if spanned == 1 or cols == 1:
        assert max(hops) <= 2


@given(rows=st.integers(1, 6), cols=st.integers(1, 8), data=st.data())
@settings(deadline=None)
def test_the_two_way_allgather_brings_every_block_to_every_member_once(
    rows: int, cols: int, data
) -> None:
    # Play `Noc.gather_steps` with the blocks themselves: a member passes on, each way, the
    # block it received last from the other side (its own at first). After the steps every
    # member holds every block, none twice, in floor(n / 2) steps, and every transfer is
    # between neighbours of the ring.
    cores = rows * cols
    noc = Noc(machine(sram={"cores": cores}, sram_noc={"mesh_cols": cols}).sram)
    lo = data.draw(st.integers(0, cores - 1))
    members = range(lo, data.draw(st.integers(lo + 1, cores)))
    ring = noc.ring(members)
    position = {core: i for i, core in enumerate(ring)}
    count = len(ring)
    held = {core: [core] for core in ring}
    last = {core: {1: core, -1: core} for core in ring}  # by direction of travel
    steps = noc.gather_steps(members)
    assert len(steps) == count // 2
    for step in steps:
        sent = []
        for sender, receiver in step:
            way = 1 if position[receiver] == (position[sender] + 1) % count else -1
            assert position[receiver] == (position[sender] + way) % count
            sent.append((receiver, way, last[sender][way]))
        for receiver, way, block in sent:
            held[receiver].append(block)
            last[receiver][way] = block
    assert all(sorted(blocks) == sorted(ring) for blocks in held.values())
