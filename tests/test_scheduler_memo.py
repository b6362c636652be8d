"""The fast engine's memos of repeated work give exactly what simulating it again gives.

- `FastSimulation.shift_groups`: a channel group (one channel's instructions between two
  cross-channel synchronizations) found in the same state relative to its start and its
  first row as a group seen before is that group's result shifted in time and rows, if no
  refresh falls due before its last command (the layers of a compiled step repeat each
  other so, except around refreshes, which fall at absolute times).
- `FastController.replay_runs`: a run of a PIM macro (a GEMV row, a `load_gb`, a
  `readout`) found in an all-bank state seen before is replayed the same way.
- Passes with a refresh inside (`FastController.stream`, `_resume`): a pass of
  `hbm.read` / `hbm.write` that a refresh interrupts where it interrupted a known pass
  before, and whose refresh could not have issued earlier anyway, is replayed whole; a pass
  in a new state with a refresh inside is replayed where the state and the refresh's due
  cycle relative to it repeat.

All are compared with the reference engine, and the first two with the same engine with
them off, on random programs whose section repeats with a row stride (hypothesis; at a
5.2 Gb/s preset and at a stress preset whose refresh falls every 700 cycles, so refreshes
fall inside repeated groups, runs and passes all the time); on programs built so that some
iterations of a repeated group have a refresh inside and the others do not, and so that a
refresh falls at the same point of the same pass twice; and on a compiled OPT-125M decode
step at several contexts, every field of the machine result.
"""

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import HbmOp, HbmProgram, fast, simulate
from hpim_ir.sim.hbm.program import Section
from hpim_ir.sim.program import MachineProgram
from hpim_ir.sim.scheduler import simulate_machine

CHANNELS = 4
"""Channels the random programs use (of the presets' 16)."""


@contextmanager
def memos(on: bool):
    """Both memos on or off for the simulations inside."""
    saved = fast.FastSimulation.shift_groups, fast.FastController.replay_runs
    fast.FastSimulation.shift_groups = fast.FastController.replay_runs = on
    try:
        yield
    finally:
        fast.FastSimulation.shift_groups, fast.FastController.replay_runs = saved


def repeated(rows: list[tuple], repeat: int, stride: int, prologue: list[tuple] = ()) -> HbmProgram:
    """`prologue`, then `rows` as one section repeated `repeat` times, rows moving by
    `stride` per iteration."""
    program = HbmProgram.from_rows(list(prologue) + list(rows))
    body = Section(len(prologue), len(program.records), "body", repeat, stride)
    sections = ((Section(0, len(prologue)),) if prologue else ()) + (body,)
    return HbmProgram(program.records, sections)


@st.composite
def repeated_programs(draw) -> HbmProgram:
    """A random section repeated 2 to 6 times with a row stride: PIM macros and raw PIM
    commands, normal-mode reads, writes and single-bank commands, barriers on several
    channels and signals (which cut the channels' work into groups), on up to 4 channels."""
    rows: list[tuple] = []
    row = st.integers(0, 40)
    for line in range(1, draw(st.integers(2, 14)) + 1):
        kind = draw(st.sampled_from(
            ["gemv"] * 4 + ["load_gb"] * 3 + ["mac"] * 2
            + ["readout", "wr_gb", "stream", "access", "act", "barrier", "signal"]
        ))
        lo = draw(st.integers(0, CHANNELS - 1))
        hi = draw(st.sampled_from([lo + 1, CHANNELS]))
        if kind == "gemv":
            rows.append((HbmOp.GEMV, lo, hi, draw(row), draw(st.integers(1, 32)),
                         draw(st.integers(1, 6)), line))
        elif kind == "load_gb":
            rows.append((HbmOp.LOAD_GB, lo, hi, -1, draw(st.integers(1, 32)), 1, line))
        elif kind == "mac":
            r = draw(row)
            for col in range(draw(st.integers(1, 20))):
                rows.append((HbmOp.MAC_AB, lo, hi, r, col % 32, 1, line))
        elif kind == "readout":
            rows.append((HbmOp.READOUT, lo, hi, -1, -1, draw(st.integers(1, 8)), line))
        elif kind == "wr_gb":
            for _ in range(draw(st.integers(1, 6))):
                rows.append((HbmOp.WR_GB, lo, hi, -1, draw(st.integers(0, 31)), 1, line))
        elif kind == "stream":
            op = draw(st.sampled_from([HbmOp.READ, HbmOp.WRITE]))
            rows.append((op, lo, hi, draw(row), draw(st.integers(1, 6)), draw(st.integers(1, 3)),
                         line))
        elif kind == "access":
            op = draw(st.sampled_from([HbmOp.RD, HbmOp.WR, HbmOp.RDA, HbmOp.WRA]))
            rows.append((op, lo, lo + 1, draw(row), draw(st.integers(0, 31)), 1, line,
                         draw(st.sampled_from([0, 1, 4, 16, 32, 63]))))
        elif kind == "act":
            rows.append((HbmOp.ACT_AB, lo, hi, draw(row), -1, 1, line))
        elif kind == "barrier":
            rows.append((HbmOp.BARRIER, 0, draw(st.sampled_from([2, CHANNELS, -1])), -1, -1, 1,
                         line))
        else:
            rows.append((HbmOp.SIGNAL, -1, -1, -1, -1, draw(st.integers(0, 3)), line))
    prologue = [(HbmOp.GEMV, 0, 1, 41, 32, draw(st.integers(0, 3)) + 1, 0)] * draw(st.booleans())
    return repeated(rows, draw(st.integers(2, 6)), draw(st.sampled_from([0, 7, 50])), prologue)


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    stress = tmp_path_factory.mktemp("hw") / "stress.toml"
    stress.write_text('extends = "hbm3-5.2gbps"\n[hbm.timing]\nnREFI = 700\nnFAW = 300\n')
    return [load_hardware("hbm3-5.2gbps"), load_hardware(str(stress))]


def assert_same_hbm(a, b) -> None:
    assert a.as_dict() | {"engine": ""} == b.as_dict() | {"engine": ""}
    assert np.array_equal(a.trace, b.trace)
    assert np.array_equal(a.timeline, b.timeline)


def assert_memos_exact(program: HbmProgram, hw) -> None:
    """Memos on, memos off and the reference engine give the same result."""
    with memos(True):
        on = simulate(program, hw, trace=True)
    with memos(False):
        off = simulate(program, hw, trace=True)
    assert_same_hbm(on, off)
    assert_same_hbm(on, simulate(program, hw, engine="reference", trace=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=repeated_programs(), which=st.integers(0, 1))
def test_memos_on_equal_memos_off_and_the_reference(machines, program, which):
    assert_memos_exact(program, machines[which])


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 1], ids=["hbm3-5.2gbps", "stress"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=repeated_programs())
def test_memos_on_equal_memos_off_and_the_reference_hundreds(machines, which, program):
    assert_memos_exact(program, machines[which])


def counting(monkeypatch) -> dict[str, int]:
    """Count the groups simulated and the groups replayed shifted, and the PIM runs
    replayed."""
    calls = {"simulated": 0, "shifted": 0, "runs simulated": 0}
    simulate_group, at, column_run = (
        fast._simulate_group, fast._ShiftedGroup.at, fast.FastController.column_run
    )

    def simulated(*args):
        calls["simulated"] += 1
        return simulate_group(*args)

    def shifted(self, *args):
        calls["shifted"] += 1
        return at(self, *args)

    def run(self, *args, **kwargs):
        calls["runs simulated"] += 1
        return column_run(self, *args, **kwargs)

    monkeypatch.setattr(fast, "_simulate_group", simulated)
    monkeypatch.setattr(fast._ShiftedGroup, "at", shifted)
    monkeypatch.setattr(fast.FastController, "column_run", run)
    return calls


def test_a_refresh_inside_a_repeated_group(machines, monkeypatch):
    # Channels 0 and 1 load the buffer and multiply two rows, then signal: one group per
    # iteration, 100 iterations, rows moving by 2. An iteration takes about 640 cycles at
    # hbm3-5.2gbps (32 WR_GB nCCDL = 4 apart, nCWL + nBL = 8 to the first MAC; per row
    # PRE_AB nRTP = 8 after the last MAC, ACT_AB nRP = 19 later, 32 MAC_AB from nRCD = 19
    # later, nCCDAB = 6 apart: about 230 cycles), nREFI is 5 070: a refresh falls due inside
    # about one iteration in eight, at a different point each time, 12 in all. From the
    # second iteration on every group starts in the same relative state, except those with
    # a REF_AB less than nRFC before their start (it still binds). Those and the ones with a
    # refresh inside are simulated, at most two per refresh; the others are replayed.
    body = [
        (HbmOp.LOAD_GB, 0, 2, -1, 32, 1, 1),
        (HbmOp.GEMV, 0, 2, 0, 32, 2, 2),
        (HbmOp.SIGNAL, -1, -1, -1, -1, 0, 3),
    ]
    program = repeated(body, 100, 2)
    hw = machines[0]
    calls = counting(monkeypatch)
    with memos(True):
        on = simulate(program, hw, trace=True)
    refreshes = on.commands["REF_AB"] // 2
    assert refreshes >= 10
    assert refreshes < calls["simulated"] <= 2 + 2 * refreshes
    assert calls["simulated"] + calls["shifted"] == 100
    with memos(False):
        off = simulate(program, hw, trace=True)
    assert_same_hbm(on, off)
    assert_same_hbm(on, simulate(program, hw, engine="reference", trace=True))


def test_pim_runs_are_replayed(machines, monkeypatch):
    # One GEMV of 500 rows on one channel (no repetition for the group memo): each row is
    # one run (PRE_AB, ACT_AB, 32 MAC_AB: about 230 cycles, as above). After the first rows
    # every row starts in the same all-bank state, so it is replayed unless a refresh falls
    # due in it or in the row before (the refresh is within the rules' reach), about 22
    # times in 115 000 cycles; the results are the reference's.
    program = HbmProgram.from_rows([(HbmOp.GEMV, 0, 1, 0, 32, 500, 1)])
    hw = machines[0]
    calls = counting(monkeypatch)
    with memos(True):
        on = simulate(program, hw, trace=True)
    refreshes = on.commands["REF_AB"]
    assert refreshes >= 20
    assert calls["runs simulated"] <= 3 + 2 * refreshes
    assert_same_hbm(on, simulate(program, hw, engine="reference", trace=True))


def test_passes_resumed_after_a_refresh_are_replayed(machines, monkeypatch):
    # Channel 0 reads 60 rows x 8 columns of every bank twice (480 passes of 64 bursts and
    # 8 ACTs each, about 40 000 cycles), each read after a wait for a token: at cycle
    # 6 070 = nREFI + 1 000 and at 51 700 = 10 nREFI + 1 000, after the first read has
    # ended (46 458). Each read starts in the same state relative to its start (banks
    # closed, everything older than the rules' reach but the refresh due at the last
    # multiple of nREFI, 1 000 cycles before), so the refreshes fall due at the same points
    # of the same passes: the second read resumes each such pass as the first did, and since
    # the refresh's precharge could not have issued earlier anyway, it is replayed.
    program = HbmProgram.from_rows([
        (HbmOp.WAIT, -1, -1, -1, -1, 0, 1),
        (HbmOp.READ, 0, 1, 100, 8, 60, 2),
        (HbmOp.WAIT, -1, -1, -1, -1, 1, 3),
        (HbmOp.READ, 0, 1, 300, 8, 60, 4),
    ])
    hw = machines[0]
    tokens = {0: 5070 + 1000, 1: 10 * 5070 + 1000}
    outcomes = []  # per pass resumed: whether it was replayed
    resume = fast.FastController._resume

    def resumed(self, *args):
        replayed = resume(self, *args)
        outcomes.append(replayed is not None)
        return replayed

    monkeypatch.setattr(fast.FastController, "_resume", resumed)
    on = simulate(program, hw, trace=True, tokens=tokens)
    first_read = int(on.timeline["end"][1])
    assert first_read < tokens[1]
    assert outcomes.count(True) == outcomes.count(False) == len(outcomes) // 2 >= 6
    assert_same_hbm(on, simulate(program, hw, engine="reference", trace=True, tokens=tokens))


def test_a_new_pass_with_a_refresh_inside_is_replayed_where_both_repeat(machines, monkeypatch):
    # Twice: a wait for a token, a one-row GEMV, a read of 4 rows. The tokens come 73 cycles
    # before a multiple of nREFI (2 x 5 070 - 73, 12 x 5 070 - 73); the GEMV ends about 40
    # cycles later, so a refresh falls due 36 cycles into the read's first pass, a pass in a
    # state no pass had without a refresh. The second time (the GEMV's row moved with the
    # read's, everything else older than the rules' reach) the state and the due cycle
    # relative to the pass repeat: the pass is replayed with its refresh, and the rest of
    # the read from the passes the first read stored. Only the first read simulates passes.
    program = HbmProgram.from_rows([
        (HbmOp.WAIT, -1, -1, -1, -1, 0, 1),
        (HbmOp.GEMV, 0, 1, 9000, 4, 1, 2),
        (HbmOp.READ, 0, 1, 100, 8, 4, 3),
        (HbmOp.WAIT, -1, -1, -1, -1, 1, 4),
        (HbmOp.GEMV, 0, 1, 9200, 4, 1, 5),
        (HbmOp.READ, 0, 1, 300, 8, 4, 6),
    ])
    hw = machines[0]
    tokens = {0: 2 * 5070 - 73, 1: 12 * 5070 - 73}
    simulated = []  # per pass simulated: (its row, the refresh due relative to its start)
    simulate_pass = fast.FastController._simulate_pass

    def recorded(self, row, shape, start):
        simulated.append((row, self.next_refresh - start))
        return simulate_pass(self, row, shape, start)

    monkeypatch.setattr(fast.FastController, "_simulate_pass", recorded)
    on = simulate(program, hw, trace=True, tokens=tokens)
    assert simulated[0] == (100, 36)
    assert all(row < 300 for row, _ in simulated)
    assert_same_hbm(on, simulate(program, hw, engine="reference", trace=True, tokens=tokens))


@pytest.fixture(scope="module")
def compiled() -> MachineProgram:
    from xdsl.context import Context

    from hpim_ir import import_model
    from hpim_ir.passes.hpim_lower import HpimLowerPass

    module = import_model("opt-125m", phase="decode")
    HpimLowerPass(hw="hpim").apply(Context(), module)
    return MachineProgram.from_module(module, "opt-125m")


@pytest.mark.parametrize(
    "ctx", [700, pytest.param(64, marks=pytest.mark.slow), pytest.param(2047, marks=pytest.mark.slow)]
)
def test_compiled_step_is_identical_with_and_without_the_memos(compiled, ctx):
    hw = load_hardware("hpim")
    with memos(True):
        on = simulate_machine(compiled, hw, ctx, trace=True)
    with memos(False):
        off = simulate_machine(compiled, hw, ctx, trace=True)
    assert on.as_dict() == off.as_dict()
    assert on.hbm_report == off.hbm_report and on.sram_report == off.sram_report
    assert on.tokens == off.tokens
    for field in ("hbm_start", "hbm_end", "sram_start", "sram_end"):
        assert np.array_equal(getattr(on, field), getattr(off, field)), field
    assert np.array_equal(on.hbm.timeline, off.hbm.timeline)
    assert np.array_equal(on.sram.timeline, off.sram.timeline)
    assert np.array_equal(on.hbm.trace, off.hbm.trace)
