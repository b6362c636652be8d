"""An independent checker of HBM-PIM command traces (CSV), written from the JEDEC rules.

It shares no code with the engine (`hpim_ir.sim.hbm`): it reads the CSV text, expands every
all-bank line (`*`) into the banks it addresses, and replays the commands against per-bank,
per-bank-group, per-rank and per-channel histories. It checks the JEDEC HBM3 rules (tRC,
tRCD, tRAS, tRP, tRTP, tRFC, tRRD_S/L, tFAW, tCCD_S/L, command-bus and data-bus occupancy,
tWTR, tRTW, bank state; tWR has nothing to check, as no command of the ISA writes the array)
and the PIM rules hpim's ISA adds (tCCDAB between all-bank MACs, a MAC only after the
global-buffer data it reads has landed, a readout only after the last MAC's result, refresh
every tREFI without postponement), as docs/hbm-engine.md states them. `check_trace` returns
every violation it finds.
"""

import csv
import io
from collections import defaultdict
from itertools import product

ROW_COMMANDS = {"ACT_AB", "PRE_AB", "REF_AB"}
COLUMN_COMMANDS = {"MAC_AB", "WR_GB", "RD_OUT"}


def bank_rules(t) -> dict[tuple[str, str], tuple[str, int]]:
    """(earlier command, later command) to the same bank -> (JEDEC name, minimum cycles)."""
    return {
        ("ACT_AB", "ACT_AB"): ("tRC", t.nRC),
        ("PRE_AB", "ACT_AB"): ("tRP", t.nRP),
        ("REF_AB", "ACT_AB"): ("tRFC", t.nRFC),
        ("ACT_AB", "MAC_AB"): ("tRCD", t.nRCD),
        ("ACT_AB", "PRE_AB"): ("tRAS", t.nRAS),
        ("MAC_AB", "PRE_AB"): ("tRTP", t.nRTP),
        ("ACT_AB", "REF_AB"): ("tRC", t.nRC),
        ("PRE_AB", "REF_AB"): ("tRP", t.nRP),
        ("REF_AB", "REF_AB"): ("tRFC", t.nRFC),
        ("REF_AB", "PRE_AB"): ("tRFC", t.nRFC),
    }


class _Channel:
    """Everything remembered about one channel while replaying."""

    def __init__(self) -> None:
        self.open: dict[tuple, int | None] = defaultdict(lambda: None)
        self.bank_last: dict[tuple, dict[str, int]] = defaultdict(dict)
        self.group_act: dict[tuple, int] = {}
        self.group_column: dict[tuple, int] = {}
        self.rank_acts: dict[tuple, list[int]] = defaultdict(list)
        self.last_mac: int | None = None
        self.buffer_write: int | None = None
        self.row_bus: tuple[int, str] | None = None
        self.column_bus: int | None = None
        self.bursts: list[tuple[int, int, str]] = []
        self.refreshes = 0


def check_trace(text: str, hbm) -> list[str]:
    """Every violation of the rules in the CSV trace `text` on hardware `hbm` (an HbmConfig)."""
    t = hbm.timing
    rules_before: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for (before, after), (name, gap) in bank_rules(t).items():
        rules_before[after].append((before, name, gap))
    banks = list(
        product(
            range(hbm.pseudo_channels),
            range(hbm.ranks),
            range(hbm.bank_groups),
            range(hbm.banks_per_group),
        )
    )
    groups = sorted({bank[:3] for bank in banks})
    channels: dict[int, _Channel] = defaultdict(_Channel)
    violations: list[str] = []
    reader = csv.DictReader(io.StringIO(text))
    expected = ["cycle", "channel", "pseudo_channel", "rank", "bank_group", "bank", "command",
                "row", "column"]
    if reader.fieldnames != expected:
        return [f"header is {reader.fieldnames}, expected {expected}"]
    previous_cycle = None
    for number, line in enumerate(reader, start=2):
        cycle, command = int(line["cycle"]), line["command"]
        state = channels[int(line["channel"])]
        where = f"line {number} (cycle {cycle}, channel {line['channel']}, {command})"

        def fail(rule: str, detail: str) -> None:
            violations.append(f"{where}: {rule}: {detail}")

        if previous_cycle is not None and cycle < previous_cycle:
            fail("order", f"trace not sorted by cycle ({previous_cycle} before {cycle})")
        previous_cycle = cycle
        bank_fields = [line[key] for key in ("pseudo_channel", "rank", "bank_group", "bank")]
        if command in ROW_COMMANDS | {"MAC_AB"}:
            if bank_fields != ["*"] * 4:
                fail("address", f"an all-bank command must address '*' banks, not {bank_fields}")
            touched = banks
        else:
            if bank_fields != ["-"] * 4:
                fail("address", f"{command} addresses no bank, not {bank_fields}")
            touched = []
        row = None if line["row"] == "-" else int(line["row"])

        # Refresh: REF k is due at k * tREFI; once due, only its PRE may precede it.
        due = (state.refreshes + 1) * t.nREFI
        if command == "REF_AB":
            if cycle < due:
                fail("tREFI", f"refresh {state.refreshes + 1} issued before it is due at {due}")
            state.refreshes += 1
        elif cycle >= due and command != "PRE_AB":
            fail("tREFI", f"refresh {state.refreshes + 1} due at {due} was postponed")

        # Bank state and per-bank timing.
        for bank in touched:
            last = state.bank_last[bank]
            for before, name, gap in rules_before[command]:
                if before in last and cycle - last[before] < gap:
                    fail(name, f"bank {bank}: {before} at {last[before]}, needs {gap} cycles")
            if command == "ACT_AB" and state.open[bank] is not None:
                fail("state", f"bank {bank} activated with row {state.open[bank]} open")
            if command == "REF_AB" and state.open[bank] is not None:
                fail("state", f"bank {bank} refreshed with row {state.open[bank]} open")
            if command == "MAC_AB" and state.open[bank] != row:
                fail("state", f"bank {bank} has row {state.open[bank]} open, MAC reads row {row}")
        if command == "ACT_AB":
            _check_activate(state, cycle, groups, t, hbm.bank_groups, fail)

        # Command buses: one command per cycle on each; ACT holds the row bus for 2 cycles.
        if command in ROW_COMMANDS:
            if state.row_bus is not None:
                busy = 2 if state.row_bus[1] == "ACT_AB" else 1
                if cycle - state.row_bus[0] < busy:
                    fail("row bus", f"{state.row_bus[1]} at {state.row_bus[0]} holds the bus")
            state.row_bus = (cycle, command)
        else:
            if state.column_bus is not None and cycle <= state.column_bus:
                fail("column bus", f"a column command already issued at {state.column_bus}")
            state.column_bus = cycle
            _check_column(state, cycle, command, groups, t, fail)

        # Update the histories.
        for bank in touched:
            state.bank_last[bank][command] = cycle
            if command == "ACT_AB":
                state.open[bank] = row
            elif command == "PRE_AB":
                state.open[bank] = None
        if command == "ACT_AB":
            for group in groups:
                state.group_act[group] = cycle
            for rank in {group[:2] for group in groups}:
                state.rank_acts[rank].append(cycle)
        elif command in ("MAC_AB", "RD_OUT"):
            for group in groups:
                state.group_column[group] = cycle
            if command == "MAC_AB":
                state.last_mac = cycle
        elif command == "WR_GB":
            state.buffer_write = cycle
    return violations


def _check_activate(state: _Channel, cycle: int, groups, t, bank_groups: int, fail) -> None:
    """tRRD_L (same bank group), tRRD_S (other bank groups of the rank), tFAW (rank)."""
    for group in groups:
        for other, last in state.group_act.items():
            if other[:2] != group[:2]:
                continue
            gap, name = (t.nRRDL, "tRRD_L") if other == group else (t.nRRDS, "tRRD_S")
            if cycle - last < gap:
                fail(name, f"bank group {other} activated at {last}, needs {gap} cycles")
    for rank, acts in state.rank_acts.items():
        # An all-bank ACT is one activation of each rank (docs/hbm-engine.md).
        if len(acts) >= 4 and cycle - acts[-4] < t.nFAW:
            fail("tFAW", f"rank {rank}: four ACTs since {acts[-4]}, window {t.nFAW} cycles")


def _check_column(state: _Channel, cycle: int, command: str, groups, t, fail) -> None:
    """Column-to-column (tCCD), data bus (bursts, tWTR, tRTW) and the PIM data rules."""
    # MAC_AB and RD_OUT address every bank group (arrays / PU outputs); WR_GB the buffer.
    if command == "WR_GB":
        if state.buffer_write is not None and cycle - state.buffer_write < t.nCCDL:
            fail("tCCD_L", f"WR_GB at {state.buffer_write}, needs {t.nCCDL} cycles")
        for group, last in state.group_column.items():
            if cycle - last < t.nCCDS:
                fail("tCCD_S", f"bank group {group} column at {last}, needs {t.nCCDS}")
    else:
        for group in groups:
            for other, last in state.group_column.items():
                if other[:2] != group[:2]:
                    continue
                gap, name = (t.nCCDL, "tCCD_L") if other == group else (t.nCCDS, "tCCD_S")
                if cycle - last < gap:
                    fail(name, f"bank group {other} column at {last}, needs {gap} cycles")
        if state.buffer_write is not None and cycle - state.buffer_write < t.nCCDS:
            fail("tCCD_S", f"WR_GB at {state.buffer_write}, needs {t.nCCDS} cycles")
    if command == "MAC_AB":
        if state.last_mac is not None and cycle - state.last_mac < t.nCCDAB:
            fail("tCCDAB", f"MAC_AB at {state.last_mac}, needs {t.nCCDAB} cycles")
        if state.buffer_write is not None and cycle < state.buffer_write + t.nCWL + t.nBL:
            fail("buffer data", f"WR_GB at {state.buffer_write} has not landed")
    if command == "RD_OUT" and state.last_mac is not None:
        if cycle < state.last_mac + t.nCL + t.nBL:
            fail("MAC result", f"MAC_AB at {state.last_mac} has not completed")
    if command in ("WR_GB", "RD_OUT"):
        direction = "write" if command == "WR_GB" else "read"
        start = cycle + (t.nCWL if direction == "write" else t.nCL)
        end = start + t.nBL
        for other_start, other_end, other_direction in state.bursts[-4:]:
            if start < other_end and other_start < end:
                fail("data bus", f"burst {start}..{end} overlaps {other_start}..{other_end}")
            if other_direction == "write" and direction == "read":
                if cycle < other_end + t.nWTRS:
                    fail("tWTR", f"write data ended at {other_end}, needs {t.nWTRS} cycles")
            if other_direction == "read" and direction == "write":
                if start < other_end + t.nRTW:
                    fail("tRTW", f"read data ended at {other_end}, needs {t.nRTW} cycles")
        state.bursts.append((start, end, direction))
