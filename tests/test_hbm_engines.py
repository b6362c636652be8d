"""The fast engine gives exactly the reference engine's results on random programs.

Random programs mix every instruction kind (PIM and normal-mode raw commands, macros over
channel ranges, barriers on one, several or all channels, signal / wait), rows that hit, miss
and conflict in all banks and in single banks, and lengths that cross refresh intervals; each
runs on both engines at both 5.2 Gb/s presets and on a stress preset whose short nREFI and
long nFAW make refresh and the four-activate window bind all the time. Cycles, per-channel
cycles, command counts and the whole command trace must be identical. The quick test runs on
every `pytest`; the one marked slow runs hundreds of programs.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import HbmOp, HbmProgram, fast, simulate
from hpim_ir.sim.hbm.program import split_count

CHANNELS = 16
"""Both 5.2 Gb/s presets have one stack of 16 channels; most instructions use the first 4."""


BANKS = 64
"""Banks per channel of both presets (2 pseudo-channels x 2 ranks x 4 bank groups x 4)."""


@st.composite
def hbm_programs(draw) -> HbmProgram:
    """A random valid program for a 16-channel, 64-bank, 16384-row, 32-column machine."""
    rows: list[tuple[int, ...]] = []
    raised: set[int] = set()
    busy = draw(st.integers(1, 4))  # channels most instructions use
    channel = st.integers(0, busy - 1)
    # Few distinct rows, so that MACs hit, miss and conflict; sometimes a far one.
    row = st.one_of(st.integers(0, 3), st.integers(0, 16383))
    # Banks 0, 1 (same bank group), 4 (same rank, other bank group), 16 (other rank), 32
    # (other pseudo-channel) and any other.
    banks = st.one_of(st.sampled_from([0, 1, 4, 16, 32]), st.integers(0, BANKS - 1))
    length = draw(st.integers(1, 24))
    long_at = draw(st.integers(1, length))
    for line in range(1, length + 1):
        if line == long_at:
            # One GEMV of 200 to 800 narrow rows (a row switch every 1 to 4 MACs): 13k cycles
            # or more, so every program crosses at least two refresh intervals.
            lo, first = draw(channel), draw(st.integers(0, 16384 - 800))
            cols, count = draw(st.integers(1, 4)), draw(st.integers(200, 800))
            rows.append((HbmOp.GEMV, lo, lo + 1, first, cols, count, line))
            continue
        kind = draw(st.sampled_from(
            ["mac"] * 6 + ["wr_gb"] * 3 + ["gemv"] * 3 + ["access"] * 6 + ["stream"] * 2
            + ["act", "pre", "rd_out", "load_gb", "readout", "barrier", "signal", "wait"]
            + ["act_one", "pre_one"]
        ))
        if kind in ("gemv", "load_gb", "readout", "barrier", "stream"):
            lo = draw(channel)
            # Streams are long: on at most the busy channels, for the reference's sake.
            hi = draw(st.sampled_from([lo + 1, busy] + [CHANNELS] * (kind != "stream")))
            if kind == "barrier" and draw(st.booleans()):
                lo, hi = 0, -1  # hbm.barrier: every channel
        else:
            lo = draw(channel)
            hi = lo + 1
        if kind == "mac":
            rows.append((HbmOp.MAC_AB, lo, hi, draw(row), draw(st.integers(0, 31)), 1, line))
            # Runs of MACs to one row, as compiled code has them.
            for col in range(draw(st.integers(0, 40))):
                rows.append((HbmOp.MAC_AB, lo, hi, rows[-1][3], col % 32, 1, line))
        elif kind == "wr_gb":
            for _ in range(draw(st.integers(1, 8))):
                rows.append((HbmOp.WR_GB, lo, hi, -1, draw(st.integers(0, 31)), 1, line))
        elif kind == "gemv":
            # Up to 1200 MACs per channel (100 over all channels); narrow GEMVs switch rows
            # often, so that programs last several refresh intervals at modest length.
            first, cols = draw(row), draw(st.integers(1, 32))
            budget = 1200 if hi - lo <= 4 else 100
            count = draw(st.integers(1, max(1, min(budget // cols, 16384 - first))))
            rows.append((HbmOp.GEMV, lo, hi, first, cols, count, line))
        elif kind == "access":
            # Single-bank reads and writes: a few banks (some in one bank group, some in
            # another pseudo-channel or rank), so that they hit, miss and pace each other.
            op = draw(st.sampled_from([HbmOp.RD, HbmOp.WR, HbmOp.RDA, HbmOp.WRA]))
            bank = draw(banks)
            for _ in range(draw(st.integers(1, 12))):
                rows.append((op, lo, hi, draw(row), draw(st.integers(0, 31)), 1, line, bank))
                op = draw(st.sampled_from([op, op, HbmOp.RD, HbmOp.WR, HbmOp.RDA, HbmOp.WRA]))
                bank = draw(st.sampled_from([bank, bank, draw(banks)]))
        elif kind == "stream":
            # A read or write of up to 3 rows x 6 columns of every bank: up to 1152 bursts
            # and 24 passes per channel, passes repeating so that the fast engine replays them.
            op = draw(st.sampled_from([HbmOp.READ, HbmOp.WRITE]))
            count, cols = draw(st.integers(1, 3)), draw(st.integers(1, 6))
            first = draw(st.integers(0, 16384 - count))
            rows.append((op, lo, hi, first, cols, count, line))
        elif kind == "act_one":
            rows.append((HbmOp.ACT, lo, hi, draw(row), -1, 1, line, draw(banks)))
        elif kind == "pre_one":
            rows.append((HbmOp.PRE, lo, hi, -1, -1, 1, line, draw(banks)))
        elif kind == "act":
            rows.append((HbmOp.ACT_AB, lo, hi, draw(row), -1, 1, line))
        elif kind == "pre":
            rows.append((HbmOp.PRE_AB, lo, hi, -1, -1, 1, line))
        elif kind == "rd_out":
            rows.append((HbmOp.RD_OUT, lo, hi, -1, -1, 1, line))
        elif kind == "load_gb":
            rows.append((HbmOp.LOAD_GB, lo, hi, -1, draw(st.integers(1, 32)), 1, line))
        elif kind == "readout":
            rows.append((HbmOp.READOUT, lo, hi, -1, -1, draw(st.integers(1, 4)), line))
        elif kind == "barrier":
            rows.append((HbmOp.BARRIER, lo, hi, -1, -1, 1, line))
        elif kind == "signal":
            token = draw(st.integers(0, 3))
            raised.add(token)
            rows.append((HbmOp.SIGNAL, -1, -1, -1, -1, token, line))
        elif raised:
            token = draw(st.sampled_from(sorted(raised)))
            rows.append((HbmOp.WAIT, -1, -1, -1, -1, token, line))
    return HbmProgram.from_rows(rows)


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    stress = tmp_path_factory.mktemp("hw") / "stress.toml"
    stress.write_text(
        'extends = "hbm3-5.2gbps"\n[hbm.timing]\nnREFI = 700\nnFAW = 300\nnRRDL = 70\n'
    )
    return [load_hardware(name) for name in ("hbm3-5.2gbps", "hbm3-5.2gbps-npc", str(stress))]


def assert_engines_agree(program: HbmProgram, hw) -> None:
    fast = simulate(program, hw, engine="fast", trace=True)
    reference = simulate(program, hw, engine="reference", trace=True)
    assert fast.cycles == reference.cycles
    assert fast.channel_cycles == reference.channel_cycles
    assert fast.commands == reference.commands
    assert fast.controller_commands == reference.controller_commands
    assert fast.energy_pj == reference.energy_pj
    assert np.array_equal(fast.trace, reference.trace)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=hbm_programs(), which=st.integers(0, 2))
def test_fast_engine_equals_reference(machines, program, which):
    assert_engines_agree(program, machines[which])
    target(float(len(program)), label="instructions")


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 1, 2], ids=["hbm3-5.2gbps", "hbm3-5.2gbps-npc", "stress"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=hbm_programs())
def test_fast_engine_equals_reference_hundreds(machines, which, program):
    assert_engines_agree(program, machines[which])


def test_identical_channels_are_simulated_once_and_copied(machines, monkeypatch):
    # 16 channels run the same instructions: the fast engine simulates one and copies it,
    # yet every channel has its own trace lines (identical up to the channel number), and
    # the reference agrees.
    program = HbmProgram.from_rows(
        [(HbmOp.LOAD_GB, 0, 16, -1, 32, 1, 1), (HbmOp.GEMV, 0, 16, 5, 32, 40, 2)]
    )
    simulated = []
    real = fast._simulate_group
    monkeypatch.setattr(
        fast, "_simulate_group", lambda *args: simulated.append(args[2]) or real(*args)
    )
    result = simulate(program, machines[0], trace=True)
    assert len(simulated) == 1
    assert_engines_agree(program, machines[0])
    per_channel = [result.trace[result.trace["channel"] == c] for c in range(16)]
    fields = ["cycle", "command", "row", "column"]
    assert all(np.array_equal(lines[fields], per_channel[0][fields]) for lines in per_channel)
    assert 16 * len(per_channel[0]) == len(result.trace) == sum(result.commands.values())
    assert result.commands["MAC_AB"] == 16 * 40 * 32


@pytest.mark.parametrize("which", [0, 1], ids=["hbm3-5.2gbps", "hbm3-5.2gbps-npc"])
def test_passes_seen_before_are_replayed(machines, monkeypatch, which):
    # hbm.read of 6 rows x 32 columns on two channels: 6 rows x 8 sets = 48 passes per
    # channel, about 2 refreshes per row. A pass that finds the state (relative to its start
    # and row) an earlier pass found is replayed, not simulated: after the first row most
    # are, except around refreshes. The trace still has every command, and the reference
    # agrees.
    program = HbmProgram.from_rows([(HbmOp.READ, 0, 2, 100, 32, 6, 1)])
    simulated = []
    real = fast.FastController._simulate_pass
    monkeypatch.setattr(
        fast.FastController,
        "_simulate_pass",
        lambda self, *args: simulated.append(args) or real(self, *args),
    )
    result = simulate(program, machines[which], trace=True)
    assert 0 < len(simulated) < 48
    assert_engines_agree(program, machines[which])
    bursts = result.commands["RD"] + result.commands["RDA"]
    assert bursts == 2 * 6 * 64 * 32 == len(result.trace[result.trace["command"] >= 8])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    per_ctx=st.integers(1, 8),
    ctx_div=st.integers(1, 64),
    pieces=st.integers(2, 5),
    ctx=st.integers(0, 60),
    which=st.integers(0, 2),
)
def test_engines_agree_on_a_context_read_in_exact_pieces(
    machines, per_ctx, ctx_div, pieces, ctx, which
):
    # A KV cache's context read in `pieces` pieces (each raising a token, as a compiled
    # decode step does): both engines give the same results, and the pieces read exactly
    # the whole's rows: the same bursts and the same ACTs but those the controllers add
    # after a refresh (which depend on where the refreshes fall).
    whole = (HbmOp.READ, 0, 2, 0, 8, 0, 1, -1, per_ctx, ctx_div, 0)
    split = split_count(0, per_ctx, ctx_div, 0, pieces)
    rows = []
    for index, (n, piece_per_ctx, piece_div, piece_off) in enumerate(split):
        row = 100 * (index + 1)
        context = (piece_per_ctx, piece_div, piece_off)
        rows.append((HbmOp.READ, 0, 2, row, 8, n, 2 * index + 1, -1, *context))
        rows.append((HbmOp.SIGNAL, -1, -1, -1, -1, index, 2 * index + 2))
    program = HbmProgram.from_rows(rows)
    hw = machines[which]
    fast = simulate(program, hw, engine="fast", trace=True, ctx=ctx)
    reference = simulate(program, hw, engine="reference", trace=True, ctx=ctx)
    assert (fast.cycles, fast.commands) == (reference.cycles, reference.commands)
    assert fast.channel_cycles == reference.channel_cycles
    assert np.array_equal(fast.trace, reference.trace)
    def issued(result, kind: str) -> int:
        return result.commands.get(kind, 0) - result.controller_commands.get(kind, 0)

    once = simulate(HbmProgram.from_rows([whole]), hw, ctx=ctx) if ctx else None
    for kind in ("ACT", "RD", "RDA"):
        assert issued(fast, kind) == (issued(once, kind) if once else 0)
