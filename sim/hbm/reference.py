"""The reference HBM-PIM engine: command by command, every bank explicit.

`ReferenceDevice` keeps the state JEDEC rules are written against: per bank (pseudo-channel x
rank x bank group x bank) the open row and the cycles of its last ACT, PRE, column read and
REF; per bank group the last ACT and column command; per rank the last four ACTs; per channel
the last all-bank MAC, the command buses and the data bus. Each command's earliest cycle is
the maximum over the rules in `docs/hbm-engine.md`, each written against that state, never
against a folded table. `simulate_reference` walks the program record by record, expands
macros into their raw commands and hands every command to the channel's controller. It is
meant to be obviously right, not fast; `fast.py` must agree with it exactly.
"""

import numpy as np

from hpim_ir.sim.hbm.controller import ChannelController
from hpim_ir.sim.hbm.engine import HbmResult, collect_result
from hpim_ir.sim.hbm.program import HbmOp, HbmProgram
from hpim_ir.sim.hbm.timing import NEVER, ROW_BUS_CYCLES, Cmd, Rules


class ReferenceDevice:
    """The banks of one channel, each with its own state."""

    def __init__(self, hbm) -> None:
        self.t = hbm.timing
        self.several_groups = hbm.bank_groups > 1
        ranks = (hbm.pseudo_channels, hbm.ranks)
        groups = ranks + (hbm.bank_groups,)
        banks = groups + (hbm.banks_per_group,)
        self.open = np.full(banks, -1, dtype=np.int64)
        self.bank_act = np.full(banks, NEVER, dtype=np.int64)
        self.bank_pre = np.full(banks, NEVER, dtype=np.int64)
        self.bank_read = np.full(banks, NEVER, dtype=np.int64)
        self.bank_ref = np.full(banks, NEVER, dtype=np.int64)
        self.group_act = np.full(groups, NEVER, dtype=np.int64)
        self.group_column = np.full(groups, NEVER, dtype=np.int64)
        """Last column command (MAC_AB or RD_OUT) to each bank group's arrays / PUs."""
        self.rank_acts = np.full(ranks + (4,), NEVER, dtype=np.int64)
        """The last four ACTs of each rank, oldest first (the four-activate window)."""
        self.last_mac = NEVER
        self.buffer_write = NEVER
        """Last WR_GB: the global buffer is the channel's one other column target."""
        self.out_read = NEVER
        """Last RD_OUT burst on the data bus."""
        self.row_bus_free = NEVER
        self.column_bus_free = NEVER

    @property
    def open_row(self) -> int:
        """The row open in every bank, or -1 when all are closed."""
        first = int(self.open.flat[0])
        if not (self.open == first).all():
            raise AssertionError("all-bank commands left the banks in different states")
        return first

    def earliest(self, cmd: Cmd, row: int) -> int:
        """The earliest cycle at which `cmd` satisfies every rule against the current state."""
        t = self.t
        if cmd == Cmd.ACT_AB:
            self._require((self.open < 0).all(), "ACT_AB to a bank with an open row")
            bounds = [
                self.row_bus_free,
                self.bank_pre.max() + t.nRP,
                self.bank_act.max() + t.nRC,
                self.bank_ref.max() + t.nRFC,
                self.group_act.max() + t.nRRDL,
                self.rank_acts[..., 0].max() + t.nFAW,
            ]
            if self.several_groups:
                bounds.append(self.group_act.max() + t.nRRDS)
        elif cmd == Cmd.PRE_AB:
            bounds = [
                self.row_bus_free,
                self.bank_act.max() + t.nRAS,
                self.bank_read.max() + t.nRTP,
                self.bank_ref.max() + t.nRFC,
            ]
        elif cmd == Cmd.REF_AB:
            self._require((self.open < 0).all(), "REF_AB with a row open")
            bounds = [
                self.row_bus_free,
                self.bank_pre.max() + t.nRP,
                self.bank_act.max() + t.nRC,
                self.bank_ref.max() + t.nRFC,
            ]
        elif cmd == Cmd.MAC_AB:
            self._require((self.open == row).all(), f"MAC_AB to row {row}, not open")
            bounds = [
                self.column_bus_free,
                self.bank_act.max() + t.nRCD,
                self.last_mac + t.nCCDAB,
                self.group_column.max() + t.nCCDL,
                self.buffer_write + t.nCCDS,
                # The global-buffer slots it reads must have landed (write latency + burst).
                self.buffer_write + t.nCWL + t.nBL,
            ]
            if self.several_groups:
                bounds.append(self.group_column.max() + t.nCCDS)
        elif cmd == Cmd.WR_GB:
            bounds = [
                self.column_bus_free,
                self.buffer_write + t.nCCDL,
                self.group_column.max() + t.nCCDS,
                # Data bus: bursts do not overlap; after read data, nRTW turnaround.
                self.buffer_write + t.nBL,
                self.out_read + t.nCL + t.nBL + t.nRTW - t.nCWL,
            ]
        else:  # RD_OUT
            bounds = [
                self.column_bus_free,
                self.group_column.max() + t.nCCDL,
                self.buffer_write + t.nCCDS,
                self.out_read + t.nBL,
                # Write-to-read turnaround: nWTR after the write burst ends.
                self.buffer_write + t.nCWL + t.nBL + t.nWTRS,
                # The last MAC's result must be in the accumulators.
                self.last_mac + t.nCL + t.nBL,
            ]
            if self.several_groups:
                bounds.append(self.group_column.max() + t.nCCDS)
        return int(max(bounds))

    def commit(self, cmd: Cmd, cycle: int, row: int) -> None:
        """Record that `cmd` issued at `cycle`."""
        if cmd == Cmd.ACT_AB:
            self.open[...] = row
            self.bank_act[...] = cycle
            self.group_act[...] = cycle
            self.rank_acts[..., :-1] = self.rank_acts[..., 1:]
            self.rank_acts[..., -1] = cycle
        elif cmd == Cmd.PRE_AB:
            self.open[...] = -1
            self.bank_pre[...] = cycle
        elif cmd == Cmd.REF_AB:
            self.bank_ref[...] = cycle
        elif cmd == Cmd.MAC_AB:
            self.bank_read[...] = cycle
            self.group_column[...] = cycle
            self.last_mac = cycle
        elif cmd == Cmd.WR_GB:
            self.buffer_write = cycle
        else:
            self.group_column[...] = cycle
            self.out_read = cycle
        if cmd in ROW_BUS_CYCLES:
            self.row_bus_free = cycle + ROW_BUS_CYCLES[cmd]
        else:
            self.column_bus_free = cycle + 1

    @staticmethod
    def _require(condition, what: str) -> None:
        if not condition:
            raise AssertionError(f"controller issued {what}")


RAW_KINDS = {
    HbmOp.WR_GB: Cmd.WR_GB,
    HbmOp.MAC_AB: Cmd.MAC_AB,
    HbmOp.ACT_AB: Cmd.ACT_AB,
    HbmOp.PRE_AB: Cmd.PRE_AB,
    HbmOp.RD_OUT: Cmd.RD_OUT,
}


def simulate_reference(
    program: HbmProgram, hw, trace: bool = False, tokens: dict[int, int] | None = None
) -> HbmResult:
    """Simulate a validated `program` command by command; `tokens` are cycles at which other
    streams raise tokens."""
    hbm = hw.hbm
    rules = Rules.from_hbm(hbm)
    channels = [
        ChannelController(ReferenceDevice(hbm), rules, trace) for _ in range(hbm.total_channels)
    ]
    raised = dict(tokens or {})
    for op, lo, hi, row, col, n, _line in program.records.tolist():
        span = channels[lo : hi if hi >= 0 else None]
        if op in RAW_KINDS:
            kind = RAW_KINDS[op]
            for channel in span:
                channel.instruction(
                    kind,
                    row if kind in (Cmd.MAC_AB, Cmd.ACT_AB) else -1,
                    col if kind in (Cmd.MAC_AB, Cmd.WR_GB) else -1,
                )
        elif op == HbmOp.GEMV:
            for channel in span:
                for r in range(row, row + n):
                    for k in range(col):
                        channel.instruction(Cmd.MAC_AB, r, k)
        elif op == HbmOp.LOAD_GB:
            for channel in span:
                for k in range(col):
                    channel.instruction(Cmd.WR_GB, -1, k)
        elif op == HbmOp.READOUT:
            for channel in span:
                for _ in range(n):
                    channel.instruction(Cmd.RD_OUT)
        elif op == HbmOp.BARRIER:
            done = max(channel.done for channel in span)
            for channel in span:
                channel.wait_until(done)
        elif op == HbmOp.SIGNAL:
            raised[n] = max(channel.done for channel in channels)
        else:  # WAIT (validation proved the token is raised before it)
            for channel in channels:
                channel.wait_until(raised[n])
    return collect_result(
        hw,
        "reference",
        [channel.done for channel in channels],
        [sum(channel.counts[cmd] for channel in channels) for cmd in Cmd],
        [sum(channel.by_controller[cmd] for channel in channels) for cmd in Cmd],
        [(index, channel.pieces) for index, channel in enumerate(channels)] if trace else None,
    )
