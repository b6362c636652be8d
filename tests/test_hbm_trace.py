"""The command trace: its CSV form, and the independent checker (tests/hbm_checker.py).

The checker finds no violation in the traces the engine writes for random programs, and
finds the violation in a trace corrupted on purpose (one per rule, PIM and normal mode).
"""

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpim_ir.asm import read_asm
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import HbmOp, HbmProgram, simulate, write_trace_csv
from tests.hbm_checker import check_trace
from tests.test_hbm_engines import hbm_programs

PRESETS = ("hbm3-5.2gbps", "hbm3-5.2gbps-npc")


def trace_csv(program: HbmProgram, hw) -> str:
    stream = io.StringIO()
    write_trace_csv(simulate(program, hw, trace=True).trace, stream)
    return stream.getvalue()


def test_csv_lines_address_all_banks_one_bank_or_none():
    hw = load_hardware("hbm3-5.2gbps")
    program = read_asm(
        "hbm.wr_gb ch=3 col=5\nhbm.mac_ab ch=3 row=9 col=5\nhbm.rd_out ch=3\n"
        "hbm.rda ch=3 bank=45 row=2 col=7\n"
    )
    # The ACT (row bus) issues in the same cycle as the WR_GB before it (column bus). Bank 45
    # is pseudo-channel 1, rank 0, bank group 3, bank 1; it has row 9 open, so the controller
    # precharges it alone at max(0 + nRAS, 19 + nRTP) = 45 and opens row 2 at 45 + nRP = 64.
    assert trace_csv(program, hw).splitlines() == [
        "cycle,channel,pseudo_channel,rank,bank_group,bank,command,row,column",
        "0,3,-,-,-,-,WR_GB,-,5",
        "0,3,*,*,*,*,ACT_AB,9,-",
        "19,3,*,*,*,*,MAC_AB,9,5",
        "40,3,-,-,-,-,RD_OUT,-,-",
        "45,3,1,0,3,1,PRE,-,-",
        "64,3,1,0,3,1,ACT,2,-",
        "83,3,1,0,3,1,RDA,2,7",
    ]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=hbm_programs(), preset=st.sampled_from(PRESETS))
def test_checker_finds_no_violation_in_engine_traces(program, preset):
    hw = load_hardware(preset)
    assert check_trace(trace_csv(program, hw), hw.hbm) == []


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=hbm_programs())
def test_checker_finds_no_violation_in_engine_traces_many(program, preset):
    hw = load_hardware(preset)
    assert check_trace(trace_csv(program, hw), hw.hbm) == []


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_checker_passes_the_benchmark_stream(preset):
    # 16 channels x 4096 MACs over 128 rows each, after loading the buffer: the stream of
    # benchmarks/bench_hbm.py, with refreshes and row switches on every channel.
    hw = load_hardware(preset)
    rows = [(HbmOp.LOAD_GB, 0, 16, -1, 32, 1, 1), (HbmOp.GEMV, 0, 16, 0, 32, 128, 2)]
    assert check_trace(trace_csv(HbmProgram.from_rows(rows), hw), hw.hbm) == []


@pytest.mark.parametrize("preset", PRESETS)
def test_checker_passes_a_long_read_and_write(preset):
    # A write then a read of 3 rows x 32 columns of every bank on one channel: 12,288 bursts
    # at one per cycle, so refreshes fall in the middle of passes (and reopen the rows).
    hw = load_hardware(preset)
    rows = [(HbmOp.WRITE, 5, 6, 40, 32, 3, 1), (HbmOp.READ, 5, 6, 40, 32, 3, 2)]
    text = trace_csv(HbmProgram.from_rows(rows), hw)
    assert text.count(",REF_AB,") >= 2
    assert check_trace(text, hw.hbm) == []


# A program in which every rule the corruptions below break is tight somewhere: WR_GB 0 ->
# RD_OUT 16 (tWTR) -> WR_GB 34 (tRTW) -> WR_GB 38 (tCCD_L); ACT 38 -> MAC 57 (tRCD) ->
# WR_GB 59 -> MAC 67 (buffer data) -> RD_OUT 88 (MAC result); GEMV row switches (tRAS, tRP,
# tCCDAB); 900 MACs on row 0 cross nREFI = 5070 (tRTP, tRFC, refresh).
CORRUPTIBLE = (
    "hbm.wr_gb ch=0 col=0\nhbm.rd_out ch=0\nhbm.load_gb ch=0 cols=2\n"
    "hbm.mac_ab ch=0 row=0 col=0\nhbm.wr_gb ch=0 col=1\nhbm.mac_ab ch=0 row=0 col=1\n"
    "hbm.readout ch=0 n=1\nhbm.gemv ch=0 row=1 rows=2 cols=2\n"
    + "".join(f"hbm.mac_ab ch=0 row=0 col={i % 32}\n" for i in range(900))
)


def _lines() -> tuple[str, list[list[str]]]:
    hw = load_hardware("hbm3-5.2gbps")
    header, *lines = trace_csv(read_asm(CORRUPTIBLE), hw).splitlines()
    return header, [line.split(",") for line in lines]


def _first(lines, command: str, after: str | None = None, gap: int | None = None) -> int:
    """Index of the first `command` line (that follows an `after` line exactly `gap`
    cycles earlier, when given)."""
    for i, line in enumerate(lines):
        if line[6] != command:
            continue
        if after is None:
            return i
        before = [other for other in lines[:i] if other[6] == after]
        if before and int(line[0]) - int(before[-1][0]) == gap:
            return i
    raise AssertionError(f"no {command} after {after} at {gap}")


def _earlier(lines, index: int, cycles: int = 1) -> list[list[str]]:
    lines[index][0] = str(int(lines[index][0]) - cycles)
    return sorted(lines, key=lambda line: int(line[0]))


CORRUPTIONS = {
    # name of the rule the checker must report: how to break it
    "tCCDAB": lambda lines: _earlier(lines, _first(lines, "MAC_AB", "MAC_AB", 6)),
    "tRCD": lambda lines: _earlier(lines, _first(lines, "MAC_AB", "ACT_AB", 19)),
    "tRAS": lambda lines: _earlier(lines, _first(lines, "PRE_AB", "ACT_AB", 45)),
    "tRTP": lambda lines: _earlier(lines, _first(lines, "PRE_AB", "MAC_AB", 8)),
    "tRP": lambda lines: _earlier(lines, _first(lines, "ACT_AB", "PRE_AB", 19)),
    "tRFC": lambda lines: _earlier(lines, _first(lines, "ACT_AB", "REF_AB", 455)),
    "tCCD_L": lambda lines: _earlier(lines, _first(lines, "WR_GB", "WR_GB", 4)),
    "tWTR_S": lambda lines: _earlier(lines, _first(lines, "RD_OUT", "WR_GB", 16)),
    "tRTW": lambda lines: _earlier(lines, _first(lines, "WR_GB", "RD_OUT", 18)),
    "MAC result": lambda lines: _earlier(lines, _first(lines, "RD_OUT", "MAC_AB", 21)),
    "buffer data": lambda lines: _earlier(lines, _first(lines, "MAC_AB", "WR_GB", 8)),
    "tREFI": lambda lines: [line for line in lines if line[6] != "REF_AB"],
    "state": lambda lines: [line for line in lines if line[6] != "PRE_AB"],
}


def test_every_corruption_point_exists_in_the_clean_trace():
    header, lines = _lines()
    hw = load_hardware("hbm3-5.2gbps")
    assert check_trace("\n".join([header] + [",".join(line) for line in lines]), hw.hbm) == []


@pytest.mark.parametrize("rule", sorted(CORRUPTIONS))
def test_checker_finds_the_corruption(rule):
    header, lines = _lines()
    corrupted = CORRUPTIONS[rule](lines)
    hw = load_hardware("hbm3-5.2gbps")
    violations = check_trace("\n".join([header] + [",".join(line) for line in corrupted]), hw.hbm)
    assert any(f": {rule}: " in violation for violation in violations), violations[:5]


def test_checker_finds_a_mac_to_the_wrong_row():
    header, lines = _lines()
    index = _first(lines, "MAC_AB")
    lines[index][7] = str(int(lines[index][7]) + 1)
    hw = load_hardware("hbm3-5.2gbps")
    violations = check_trace("\n".join([header] + [",".join(line) for line in lines]), hw.hbm)
    assert any(": state: " in violation and "MAC_AB reads row" in violation
               for violation in violations)


# Normal mode: small programs (those of tests/test_hbm_timing.py) in which a rule is tight at
# one command, and which line breaks it when moved one cycle earlier: (cycle, command).
NORMAL_MODE = {
    # ACT bank 0 at 0, bank 1 (same group) at nRRDL = 4.
    "tRRD_L": ("hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=1 row=0\n", (4, "ACT")),
    # ACT bank 0 at 0, bank 4 (same rank, other group) at nRRDS = 2.
    "tRRD_S": ("hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=4 row=0\n", (2, "ACT")),
    # The fifth ACT of rank 0 at 0 + nFAW = 39.
    "tFAW": ("".join(f"hbm.act ch=0 bank={b} row=0\n" for b in (0, 4, 8, 12, 1)), (39, "ACT")),
    # RD bank 0 at 19 (nRCD).
    "tRCD": ("hbm.rd ch=0 bank=0 row=0 col=0\n", (19, "RD")),
    # RDs of bank 0 at 19 and 23 (nCCDL); then bank 4 (same rank) at 25 = 23 + nCCDS, bank 16
    # (other rank, same data bus) at 23 + nBL, bank 32 (other pseudo-channel) at 24.
    "tCCD_L": ("hbm.rd ch=0 bank=0 row=0 col=0\nhbm.rd ch=0 bank=0 row=0 col=1\n", (23, "RD")),
    "tCCD_S": (
        "hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=4 row=0\nhbm.rd ch=0 bank=0 row=0 col=0\n"
        "hbm.rd ch=0 bank=0 row=0 col=1\nhbm.rd ch=0 bank=4 row=0 col=0\n",
        (25, "RD"),
    ),
    "data bus": (
        "hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=16 row=0\nhbm.rd ch=0 bank=0 row=0 col=0\n"
        "hbm.rd ch=0 bank=0 row=0 col=1\nhbm.rd ch=0 bank=16 row=0 col=0\n",
        (25, "RD"),
    ),
    "column bus": (
        "hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=32 row=0\nhbm.rd ch=0 bank=0 row=0 col=0\n"
        "hbm.rd ch=0 bank=0 row=0 col=1\nhbm.rd ch=0 bank=32 row=0 col=0\n",
        (24, "RD"),
    ),
    # WR bank 0 at 19, its data ends at 27: RD bank 1 (same group) at 27 + nWTRL = 38, bank 4
    # (other group) at 27 + nWTRS = 35.
    "tWTR_L": (
        "hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=1 row=0\nhbm.wr ch=0 bank=0 row=0 col=0\n"
        "hbm.rd ch=0 bank=1 row=0 col=0\n",
        (38, "RD"),
    ),
    "tWTR_S": (
        "hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=4 row=0\nhbm.wr ch=0 bank=0 row=0 col=0\n"
        "hbm.rd ch=0 bank=4 row=0 col=0\n",
        (35, "RD"),
    ),
    # RD bank 0 at 19: WR bank 1 at 19 + nCL + nBL + nRTW - nCWL = 37.
    "tRTW": (
        "hbm.act ch=0 bank=0 row=0\nhbm.act ch=0 bank=1 row=0\nhbm.rd ch=0 bank=0 row=0 col=0\n"
        "hbm.wr ch=0 bank=1 row=0 col=0\n",
        (37, "WR"),
    ),
    # WR bank 9 at 19: PRE at 19 + nCWL + nBL + nWR = 48.
    "tWR": ("hbm.wr ch=0 bank=9 row=0 col=0\nhbm.pre ch=0 bank=9\n", (48, "PRE")),
    # RDA bank 3 at 19 closes it at 0 + nRAS = 45: the next ACT at 45 + nRP = 64.
    "tRP": ("hbm.rda ch=0 bank=3 row=0 col=0\nhbm.rd ch=0 bank=3 row=0 col=1\n", (64, "ACT")),
}


def _normal_lines(text: str) -> tuple[str, list[list[str]]]:
    header, *lines = trace_csv(read_asm(text), load_hardware("hbm3-5.2gbps")).splitlines()
    return header, [line.split(",") for line in lines]


def _check(header: str, lines: list[list[str]]) -> list[str]:
    text = "\n".join([header] + [",".join(line) for line in lines])
    return check_trace(text, load_hardware("hbm3-5.2gbps").hbm)


@pytest.mark.parametrize("rule", sorted(NORMAL_MODE))
def test_checker_finds_the_normal_mode_corruption(rule):
    text, (cycle, command) = NORMAL_MODE[rule]
    header, lines = _normal_lines(text)
    assert _check(header, lines) == []
    index = next(i for i, line in enumerate(lines) if line[:1] + line[6:7] == [str(cycle), command])
    violations = _check(header, _earlier(lines, index))
    assert any(f": {rule}: " in violation for violation in violations), violations


def test_checker_finds_an_access_to_a_closed_bank_and_a_bad_address():
    header, lines = _normal_lines("hbm.rd ch=0 bank=6 row=2 col=0\n")
    violations = _check(header, [line for line in lines if line[6] != "ACT"])
    assert any(": state: " in v and "RD reads row 2" in v for v in violations), violations
    lines[1][2:6] = ["*"] * 4
    assert any(": address: " in v for v in _check(header, lines))
