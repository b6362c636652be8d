"""An independent checker of HBM-PIM command traces (CSV), written from the JEDEC rules.

It shares no code with the engine (`hpim_ir.sim.hbm`): it reads the CSV text, expands every
all-bank line (`*`) into the banks it addresses, and replays the commands against per-bank,
per-bank-group, per-rank, per-pseudo-channel and per-channel histories. It checks the JEDEC
HBM3 rules (tRC, tRCD, tRAS, tRP, tRTP, tWR, tRFC, tRRD_S/L, tFAW, tCCD_S/L, tWTR_S/L, tRTW,
command-bus and data-bus occupancy, bank state, the auto-precharge of RDA / WRA) and the PIM
rules hpim's ISA adds (tCCDAB between all-bank MACs, a MAC only after the global-buffer data
it reads has landed, a readout only after the last MAC's result, the global buffer as one
more column target, refresh every tREFI without postponement), as docs/hbm-engine.md states
them. `check_trace` returns every violation it finds.
"""

import csv
import io
from collections import defaultdict
from itertools import product

ROW_COMMANDS = {"ACT_AB", "PRE_AB", "REF_AB", "ACT", "PRE"}
ALL_BANK = {"ACT_AB", "PRE_AB", "REF_AB", "MAC_AB"}
ONE_BANK = {"ACT", "PRE", "RD", "WR", "RDA", "WRA"}
ACTIVATE = {"ACT", "ACT_AB"}
PRECHARGE = {"PRE", "PRE_AB"}
ARRAY_READ = {"RD", "RDA", "MAC_AB"}
ARRAY_WRITE = {"WR", "WRA"}
OPEN_NEEDED = ARRAY_READ | ARRAY_WRITE
# Column commands through bank groups' column paths, and which of them read.
GROUP_COLUMN = ARRAY_READ | ARRAY_WRITE | {"RD_OUT"}
GROUP_READ = ARRAY_READ | {"RD_OUT"}
# Bursts on a pseudo-channel's data bus (RD_OUT and WR_GB: on every pseudo-channel's).
LATENCY = {"RD": "nCL", "RDA": "nCL", "RD_OUT": "nCL", "WR": "nCWL", "WRA": "nCWL", "WR_GB": "nCWL"}
DIRECTION = {"RD": "read", "RDA": "read", "RD_OUT": "read", "WR": "write", "WRA": "write",
             "WR_GB": "write"}  # fmt: skip


def bank_rules(t) -> dict[tuple[str, str], tuple[str, int]]:
    """(earlier kind, later command) in the same bank -> (JEDEC name, minimum cycles); the
    earlier kind `closed` is the cycle the bank was precharged (PRE, PRE_AB, auto-precharge),
    `read` / `write` its last array read / write."""
    rules = {}
    for act in ACTIVATE:
        rules[act, "ACT"] = rules[act, "ACT_AB"] = rules[act, "REF_AB"] = ("tRC", t.nRC)
        for later in OPEN_NEEDED:
            rules[act, later] = ("tRCD", t.nRCD)
        for later in PRECHARGE:
            rules[act, later] = ("tRAS", t.nRAS)
    for later in ("ACT", "ACT_AB", "REF_AB"):
        rules["closed", later] = ("tRP", t.nRP)
    for later in PRECHARGE:
        rules["read", later] = ("tRTP", t.nRTP)
        rules["write", later] = ("tWR", t.nCWL + t.nBL + t.nWR)
    for later in ("ACT", "ACT_AB", "PRE", "PRE_AB", "REF_AB"):
        rules["REF_AB", later] = ("tRFC", t.nRFC)
    return rules


class _Channel:
    """Everything remembered about one channel while replaying."""

    def __init__(self, hbm) -> None:
        self.all_groups = list(
            product(range(hbm.pseudo_channels), range(hbm.ranks), range(hbm.bank_groups))
        )
        self.open: dict[tuple, int | None] = defaultdict(lambda: None)
        self.bank_last: dict[tuple, dict[str, int]] = defaultdict(dict)
        self.group_act: dict[tuple, int] = {}
        self.group_column: dict[tuple, int] = {}
        self.group_write: dict[tuple, int] = {}
        self.rank_act: dict[tuple, int] = {}
        self.rank_acts: dict[tuple, list[int]] = defaultdict(list)
        self.rank_column: dict[tuple, int] = {}
        self.bursts: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        self.last_mac: int | None = None
        self.buffer_write: int | None = None
        self.row_bus: tuple[int, str] | None = None
        self.column_bus: int | None = None
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
    channels: dict[int, _Channel] = defaultdict(lambda: _Channel(hbm))
    violations: list[str] = []
    reader = csv.DictReader(io.StringIO(text))
    expected = ["cycle", "channel", "pseudo_channel", "rank", "bank_group", "bank", "command",
                "row", "column"]  # fmt: skip
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
        if command in ALL_BANK:
            if bank_fields != ["*"] * 4:
                fail("address", f"an all-bank command must address '*' banks, not {bank_fields}")
            touched = banks
        elif command in ONE_BANK:
            try:
                touched = [tuple(int(field) for field in bank_fields)]
            except ValueError:
                fail("address", f"{command} addresses one bank, not {bank_fields}")
                continue
            if touched[0] not in banks:
                fail("address", f"no bank {touched[0]} on this channel")
                continue
        else:
            if bank_fields != ["-"] * 4:
                fail("address", f"{command} addresses no bank, not {bank_fields}")
            touched = []
        row = None if line["row"] == "-" else int(line["row"])

        # Refresh: REF k is due at k * tREFI; once due, only its PRE_AB may precede it.
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
            if command in ACTIVATE and state.open[bank] is not None:
                fail("state", f"bank {bank} activated with row {state.open[bank]} open")
            if command == "REF_AB" and state.open[bank] is not None:
                fail("state", f"bank {bank} refreshed with row {state.open[bank]} open")
            if command in OPEN_NEEDED and state.open[bank] != row:
                fail("state", f"bank {bank} has row {state.open[bank]} open, {command} reads "
                              f"row {row}")  # fmt: skip
        if command in ACTIVATE:
            _check_activate(state, cycle, touched, t, fail)

        # Command buses: one command per cycle on each; ACT holds the row bus for 2 cycles.
        if command in ROW_COMMANDS:
            if state.row_bus is not None:
                busy = 2 if state.row_bus[1] in ACTIVATE else 1
                if cycle - state.row_bus[0] < busy:
                    fail("row bus", f"{state.row_bus[1]} at {state.row_bus[0]} holds the bus")
            state.row_bus = (cycle, command)
        else:
            if state.column_bus is not None and cycle <= state.column_bus:
                fail("column bus", f"a column command already issued at {state.column_bus}")
            state.column_bus = cycle
            _check_column(state, cycle, command, touched, hbm, fail)

        _update(state, cycle, command, touched, row, t)
    return violations


def _update(state: _Channel, cycle: int, command: str, touched: list, row, t) -> None:
    """Record the command in the histories."""
    for bank in touched:
        last = state.bank_last[bank]
        if command in ACTIVATE:
            last[command] = cycle
            state.open[bank] = row
        elif command in PRECHARGE:
            last["closed"] = cycle
            state.open[bank] = None
        elif command == "REF_AB":
            last["REF_AB"] = cycle
        elif command in ARRAY_READ:
            last["read"] = cycle
        elif command in ARRAY_WRITE:
            last["write"] = cycle
        if command in ("RDA", "WRA"):
            # Auto-precharge: the bank closes once tRTP (tWR after the write data) and tRAS
            # since its activation allow, without a command on the bus.
            recovery = t.nRTP if command == "RDA" else t.nCWL + t.nBL + t.nWR
            activated = max(last.get(act, -(10**18)) for act in ACTIVATE)
            last["closed"] = max(cycle + recovery, activated + t.nRAS)
            state.open[bank] = None
    groups = {bank[:3] for bank in touched}
    if command in ACTIVATE:
        for group in groups:
            state.group_act[group] = cycle
        for rank in {group[:2] for group in groups}:
            state.rank_act[rank] = cycle
            state.rank_acts[rank].append(cycle)
    if command in GROUP_COLUMN:
        reached = groups if command != "RD_OUT" else set(state.all_groups)
        for group in reached:
            state.group_column[group] = cycle
            if command in ARRAY_WRITE:
                state.group_write[group] = cycle
        for rank in {group[:2] for group in reached}:
            state.rank_column[rank] = cycle
    if command == "MAC_AB":
        state.last_mac = cycle
    elif command == "WR_GB":
        state.buffer_write = cycle


def _check_activate(state: _Channel, cycle: int, touched: list, t, fail) -> None:
    """tRRD_L (same bank group), tRRD_S (same rank), tFAW (rank)."""
    groups = {bank[:3] for bank in touched}
    for group in groups:
        if group in state.group_act and cycle - state.group_act[group] < t.nRRDL:
            fail("tRRD_L", f"bank group {group} activated at {state.group_act[group]}, needs "
                           f"{t.nRRDL} cycles")  # fmt: skip
    for rank in {group[:2] for group in groups}:
        if rank in state.rank_act and cycle - state.rank_act[rank] < t.nRRDS:
            fail("tRRD_S", f"rank {rank} activated at {state.rank_act[rank]}, needs {t.nRRDS}")
        acts = state.rank_acts[rank]
        # An all-bank ACT is one activation of each rank (docs/hbm-engine.md).
        if len(acts) >= 4 and cycle - acts[-4] < t.nFAW:
            fail("tFAW", f"rank {rank}: four ACTs since {acts[-4]}, window {t.nFAW} cycles")


def _check_column(state: _Channel, cycle: int, command: str, touched: list, hbm, fail) -> None:
    """Column-to-column (tCCD), data bus (bursts, tWTR, tRTW) and the PIM data rules."""
    t = hbm.timing
    if command == "WR_GB":
        if state.buffer_write is not None and cycle - state.buffer_write < t.nCCDL:
            fail("tCCD_L", f"WR_GB at {state.buffer_write}, needs {t.nCCDL} cycles")
        for group, last in state.group_column.items():
            if cycle - last < t.nCCDS:
                fail("tCCD_S", f"bank group {group} column at {last}, needs {t.nCCDS}")
    else:
        groups = {bank[:3] for bank in touched} if command != "RD_OUT" else set(state.all_groups)
        for group in groups:
            last = state.group_column.get(group)
            if last is not None and cycle - last < t.nCCDL:
                fail("tCCD_L", f"bank group {group} column at {last}, needs {t.nCCDL} cycles")
            write = state.group_write.get(group)
            if command in GROUP_READ and write is not None:
                if cycle < write + t.nCWL + t.nBL + t.nWTRL:
                    fail("tWTR_L", f"bank group {group} written at {write}, needs "
                                   f"{t.nCWL + t.nBL + t.nWTRL} cycles")  # fmt: skip
        for rank in {group[:2] for group in groups}:
            last = state.rank_column.get(rank)
            if last is not None and cycle - last < t.nCCDS:
                fail("tCCD_S", f"rank {rank} column at {last}, needs {t.nCCDS} cycles")
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
    if command in DIRECTION:
        direction = DIRECTION[command]
        start = cycle + getattr(t, LATENCY[command])
        end = start + t.nBL
        if command in ("WR_GB", "RD_OUT"):
            buses = range(hbm.pseudo_channels)
        else:
            buses = {bank[0] for bank in touched}
        for bus in buses:
            for other_start, other_end, other_direction in state.bursts[bus][-4:]:
                if start < other_end and other_start < end:
                    fail("data bus", f"pseudo-channel {bus}: burst {start}..{end} overlaps "
                                     f"{other_start}..{other_end}")  # fmt: skip
                if other_direction == "write" and direction == "read":
                    if cycle < other_end + t.nWTRS:
                        fail("tWTR_S", f"pseudo-channel {bus}: write data ended at {other_end}, "
                                       f"needs {t.nWTRS} cycles")  # fmt: skip
                if other_direction == "read" and direction == "write":
                    if start < other_end + t.nRTW:
                        fail("tRTW", f"pseudo-channel {bus}: read data ended at {other_end}, "
                                     f"needs {t.nRTW} cycles")  # fmt: skip
            state.bursts[bus].append((start, end, direction))
