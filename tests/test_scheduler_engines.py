"""What the central scheduler needs from the engines, checked against slower references.

- HBM-PIM: a program whose waits are resolved one at a time (`start`, `advance`,
  `provide`) gives exactly the batch result with every token given up front
  (`simulate(..., tokens=)`), on both engines; and the two engines give the same
  per-record, per-channel timeline.
- SRAM-PIM: replaying a collective's schedule on links free from its start
  (`Noc.schedules`) gives exactly what reserving it transfer by transfer gives.
- The scheduler: running both streams concurrently gives the fixpoint of running each in
  batch with the other's token cycles, round after round, on random mixed programs.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import RECORD_DTYPE, HbmOp, HbmProgram, expand_sections, simulate
from hpim_ir.sim.hbm.engine import start
from hpim_ir.sim.program import MachineProgram
from hpim_ir.sim.scheduler import Clocks, simulate_machine
from hpim_ir.sim.sram import ProgramBuilder, SramEngine, SramOp, Space, VcuFn
from hpim_ir.sim.sram.noc import Noc
from tests.sram_support import machine
from tests.test_hbm_engines import hbm_programs

HW = load_hardware("hbm3-5.2gbps")
EXTERNAL = (10, 11, 12)
"""Tokens the random programs wait for that another stream raises."""


@st.composite
def programs_with_external_waits(draw) -> tuple[HbmProgram, dict[int, int]]:
    """A random HBM program with waits for tokens of another stream inserted anywhere,
    and the cycles those tokens are raised at."""
    records = draw(hbm_programs()).records
    waits = draw(st.lists(st.sampled_from(EXTERNAL), min_size=1, max_size=4))
    rows = records.tolist()
    for token in waits:
        at = draw(st.integers(0, len(rows)))
        rows.insert(at, (HbmOp.WAIT, -1, -1, -1, -1, token, 0, -1, 0, 1))
    cycles = {t: draw(st.integers(0, 20_000)) for t in EXTERNAL}
    return HbmProgram.from_rows(rows), cycles


def incremental(program: HbmProgram, tokens: dict[int, int], engine: str):
    """Run `program` providing each external token only when a wait stops on it."""
    simulation = start(expand_sections(program), HW, engine=engine, trace=True)
    stops = []
    while not simulation.advance():
        stops.append(simulation.waiting)
        simulation.provide(simulation.waiting, tokens[simulation.waiting])
    assert stops  # the program waits for a token given only when asked
    assert len(stops) == len(set(stops))  # each token stops it at most once
    return simulation.result()


def same(a, b) -> None:
    assert {**a.as_dict(), "engine": ""} == {**b.as_dict(), "engine": ""}
    assert np.array_equal(a.trace, b.trace)
    assert np.array_equal(a.timeline, b.timeline)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs_with_external_waits())
def test_waits_resolved_one_at_a_time_match_the_batch_run(case) -> None:
    program, tokens = case
    batch = simulate(program, HW, engine="fast", trace=True, tokens=tokens)
    fast = incremental(program, tokens, "fast")
    reference = incremental(program, tokens, "reference")
    same(batch, fast)
    same(fast, reference)
    # The timeline: one entry per record and channel it runs on, and per sync record.
    records = program.records
    width = np.where(records["ch_hi"] < 0, HW.hbm.total_channels, records["ch_hi"]) - records["ch_lo"]
    sync = np.isin(records["op"], (HbmOp.SIGNAL, HbmOp.WAIT)) | (
        (records["op"] == HbmOp.BARRIER) & (width > 1)
    )
    assert len(fast.timeline) == int(width[~sync].sum() + sync.sum())
    assert (fast.timeline["end"] >= fast.timeline["start"]).all()


def test_a_signal_after_a_wait_is_no_earlier_than_the_wait() -> None:
    # Nothing has run when the wait is released at 500: the signal behind it is raised at
    # 500 (every earlier instruction, the wait included, has completed), not at 0.
    program = HbmProgram.from_rows(
        [(HbmOp.WAIT, -1, -1, -1, -1, 10, 1), (HbmOp.SIGNAL, -1, -1, -1, -1, 0, 2)]
    )
    simulation = start(program, HW)
    assert not simulation.advance() and simulation.waiting == 10
    simulation.provide(10, 500)
    assert simulation.advance()
    assert simulation.raised == {0: 500}


def random_collectives(draw) -> tuple:
    """A program of collectives over random core ranges, with local work in between so
    that some start while links are busy and some on free links."""
    b = ProgramBuilder()
    for buf in range(3):
        b.add(SramOp.ALLOC, None, kind=Space.AM, dst=buf, sizes=[512])
    for _ in range(draw(st.integers(1, 12))):
        lo = draw(st.integers(0, 3))
        hi = draw(st.integers(lo + 1, 4))
        if draw(st.booleans()):
            b.add(SramOp.SCALAR, (lo, hi), sizes=[draw(st.integers(1, 30))])
        op = draw(st.sampled_from([SramOp.ALLGATHER, SramOp.REDUCE]))
        size = draw(st.sampled_from([8, 16, 64]))
        b.add(op, (lo, hi), dst=draw(st.integers(0, 2)), src0=draw(st.integers(0, 2)), sizes=[size])
    return b.build()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_replayed_collectives_match_transfer_by_transfer(data) -> None:
    hw = machine()
    program = random_collectives(data.draw)
    replayed = SramEngine(hw).run(program, 0, timeline=True)
    original = Noc.collective
    try:
        Noc.collective = Noc._collective  # no schedules: every transfer reserved
        direct = SramEngine(hw).run(program, 0, timeline=True)
    finally:
        Noc.collective = original
    assert replayed.as_dict() == direct.as_dict()
    assert np.array_equal(replayed.timeline, direct.timeline)


def test_a_collective_on_free_links_is_replayed(monkeypatch) -> None:
    # The second all-gather reads the first one's result: it starts once the first has
    # completed, on links free again, and is replayed; the third overlaps local work only.
    calls = []
    direct = Noc._collective
    monkeypatch.setattr(Noc, "_collective", lambda self, *a: calls.append(a) or direct(self, *a))
    b = ProgramBuilder()
    for buf in range(2):
        b.add(SramOp.ALLOC, None, kind=Space.AM, dst=buf, sizes=[512])
    for _ in range(3):
        b.add(SramOp.ALLGATHER, (0, 4), dst=1, src0=0, sizes=[16])
        b.add(SramOp.ALLGATHER, (0, 4), dst=0, src0=1, sizes=[16])
    result = SramEngine(machine()).run(b.build(), 0, timeline=True)
    assert len(calls) == 1
    # Six identical collectives back to back: the same duration each.
    ends = sorted(set(result.timeline["end"][result.timeline["op"] == SramOp.ALLGATHER].tolist()))
    starts = sorted(set(result.timeline["start"][result.timeline["op"] == SramOp.ALLGATHER].tolist()))
    assert len(set(np.subtract(ends, starts).tolist())) == 1


# ---------------------------------------------------------------------------------------
# The scheduler against a fixpoint of batch runs


@st.composite
def mixed_programs(draw) -> MachineProgram:
    """Two streams built along one global order of events (work on one side, or a token
    from one side to the other: a signal at the end of the raiser's stream, a wait at the
    end of the receiver's), so that no wait can deadlock."""
    hbm_rows: list[tuple] = []
    sram = ProgramBuilder()
    sram.add(SramOp.ALLOC, None, kind=Space.AM, dst=0, sizes=[4096])
    token = 0
    for _ in range(draw(st.integers(1, 14))):
        event = draw(st.sampled_from(["hbm", "sram", "to_sram", "to_hbm"]))
        if event == "hbm":
            lo = draw(st.integers(0, 3))
            hi = draw(st.integers(lo + 1, 8))
            kind = draw(st.sampled_from(["readout", "gemv"]))
            if kind == "readout":
                hbm_rows.append((HbmOp.READOUT, lo, hi, -1, -1, draw(st.integers(1, 40)), 0))
            else:
                row, cols = draw(st.integers(0, 100)), draw(st.integers(1, 32))
                hbm_rows.append((HbmOp.LOAD_GB, lo, hi, -1, cols, 1, 0))
                hbm_rows.append((HbmOp.GEMV, lo, hi, row, cols, draw(st.integers(1, 60)), 0))
        elif event == "sram":
            lo = draw(st.integers(0, 3))
            cores = (lo, draw(st.integers(lo + 1, 6)))
            kind = draw(st.sampled_from(["scalar", "vcu", "load", "store"]))
            if kind == "scalar":
                sram.add(SramOp.SCALAR, cores, sizes=[draw(st.integers(1, 3000))])
            elif kind == "vcu":
                sram.add(SramOp.VCU, cores, kind=VcuFn.SOFTMAX, dst=0, src0=0,
                         sizes=[draw(st.integers(1, 2048))])
            elif kind == "load":
                sram.add(SramOp.LOAD, cores, dst=0, sizes=[draw(st.integers(1, 4096))])
            else:
                sram.add(SramOp.STORE, cores, src0=0, sizes=[draw(st.integers(1, 4096))])
        elif event == "to_sram":
            hbm_rows.append((HbmOp.SIGNAL, -1, -1, -1, -1, token, 0))
            sram.add(SramOp.WAIT, (0, draw(st.integers(1, 6))), tok=token)
            token += 1
        else:
            lo = draw(st.integers(0, 3))
            sram.add(SramOp.SIGNAL, (lo, draw(st.integers(lo + 1, 6))), tok=token)
            hbm_rows.append((HbmOp.WAIT, -1, -1, -1, -1, token, 0))
            token += 1
    hbm = HbmProgram.from_rows(hbm_rows) if hbm_rows else HbmProgram(np.zeros(0, RECORD_DTYPE))
    return MachineProgram.of(hbm, sram.build())


def fixpoint(program: MachineProgram, hw) -> tuple:
    """Both streams run in batch, each with the other's tokens as the last round raised
    them, from all tokens at cycle 0 until nothing changes: the least fixpoint, which is
    the concurrent run's schedule (the engines are monotone in the tokens' cycles here)."""
    clocks = Clocks.of(hw)
    step = program.step(hw)
    to_sram: dict[int, int] = {}
    to_hbm: dict[int, int] = {}
    sram_tokens = set(step.sram.records["tok"][step.sram.records["op"] == SramOp.SIGNAL].tolist())
    hbm_tokens = set(step.hbm.records["n"][step.hbm.records["op"] == HbmOp.SIGNAL].tolist())
    to_hbm = dict.fromkeys(sram_tokens, 0)
    to_sram = dict.fromkeys(hbm_tokens, 0)
    for _ in range(60):
        simulation = start(step.hbm, hw, tokens=to_hbm)
        hbm = simulation.run()
        sram = SramEngine(hw).run(step.sram, 0, tokens=to_sram, timeline=True)
        new_to_sram = {t: clocks.hbm_to_sram(c) for t, c in simulation.raised.items()}
        new_to_hbm = {t: clocks.sram_to_hbm(c) for t, c in sram.signals.items()}
        if new_to_sram == to_sram and new_to_hbm == to_hbm:
            return hbm, sram
        to_sram, to_hbm = new_to_sram, new_to_hbm
    raise AssertionError("no fixpoint after 60 rounds")


@settings(max_examples=40, deadline=None)
@given(mixed_programs())
def test_the_scheduler_matches_the_fixpoint_of_batch_runs(program) -> None:
    hw = load_hardware("hpim")
    result = simulate_machine(program, hw)
    hbm, sram = fixpoint(program, hw)
    assert result.hbm.as_dict() == hbm.as_dict()
    assert np.array_equal(result.hbm.timeline, hbm.timeline)
    assert result.sram.as_dict() == sram.as_dict()
    assert np.array_equal(result.sram.timeline, sram.timeline)
