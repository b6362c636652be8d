"""The reference HBM-PIM engine: command by command, every bank explicit.

`ReferenceDevice` keeps the state JEDEC rules are written against: per bank (pseudo-channel x
rank x bank group x bank) the open row and the cycles of its last ACT, precharge, array read,
array write and REF; per bank group the last ACT, column command and write; per rank the last
ACT, the last four ACTs and the last column command; per pseudo-channel the last read and
write burst on its data bus; per channel the last all-bank MAC, global-buffer write and the
command buses. Each command's earliest cycle is the maximum over the rules in
`docs/hbm-engine.md`, each written against that state, never against a folded table.
`simulate_reference` walks the program record by record, expands macros into their raw
commands and hands every command to the channel's controller. It is meant to be obviously
right, not fast; `fast.py` must agree with it exactly.
"""

import numpy as np

from hpim_ir.sim.hbm.controller import RAW_KINDS, ChannelController
from hpim_ir.sim.hbm.engine import HbmResult, HbmSimulation, collect_result
from hpim_ir.sim.hbm.normal import BankGeometry, pass_commands, stream_passes
from hpim_ir.sim.hbm.program import HbmOp, HbmProgram
from hpim_ir.sim.hbm.timing import NEVER, ROW_BUS_CYCLES, Cmd, Rules


class ReferenceDevice:
    """The banks of one channel, each with its own state."""

    def __init__(self, hbm) -> None:
        self.t = hbm.timing
        self.geometry = BankGeometry.of(hbm)
        ranks = (hbm.pseudo_channels, hbm.ranks)
        groups = ranks + (hbm.bank_groups,)
        banks = groups + (hbm.banks_per_group,)

        def never(shape: tuple) -> np.ndarray:
            return np.full(shape, NEVER, dtype=np.int64)

        self.banks = np.full(banks, -1, dtype=np.int64)
        """The open row of each bank, -1 if closed."""
        self.bank_act, self.bank_closed = never(banks), never(banks)
        """Last ACT; last precharge (PRE, PRE_AB, or the auto-precharge of RDA / WRA)."""
        self.bank_read, self.bank_write, self.bank_ref = never(banks), never(banks), never(banks)
        """Last array read (RD, RDA, MAC_AB), array write (WR, WRA), REF_AB."""
        self.group_act, self.group_column, self.group_write = (
            never(groups), never(groups), never(groups)
        )
        """Last ACT; last column command through the group (RD, WR, MAC_AB, RD_OUT); last WR."""
        self.rank_act, self.rank_column = never(ranks), never(ranks)
        self.rank_acts = never(ranks + (4,))
        """The last four ACTs of each rank, oldest first (the four-activate window)."""
        self.pc_read, self.pc_write = never(ranks[:1]), never(ranks[:1])
        """Last read / write burst on each pseudo-channel's data bus (RD_OUT and WR_GB use
        every pseudo-channel's)."""
        self.last_mac = NEVER
        self.buffer_write = NEVER
        """Last WR_GB: the global buffer is the channel's one other column target."""
        self.row_bus_free = NEVER
        self.column_bus_free = NEVER

    @property
    def open(self) -> np.ndarray:
        """The open row of each bank by bank number (-1: closed)."""
        return self.banks.reshape(-1)

    def all_open(self, row: int) -> bool:
        return bool((self.banks == row).all())

    def any_open(self) -> bool:
        return bool((self.banks >= 0).any())

    def earliest(self, cmd: Cmd, row: int, bank: int) -> int:
        """The earliest cycle at which `cmd` satisfies every rule against the current state."""
        t = self.t
        if cmd in (Cmd.ACT, Cmd.PRE, Cmd.RD, Cmd.WR, Cmd.RDA, Cmd.WRA):
            return self._earliest_one(cmd, row, self.geometry.address(bank))
        write_to_read = t.nCWL + t.nBL + t.nWTRS
        read_to_write = t.nCL + t.nBL + t.nRTW - t.nCWL
        if cmd == Cmd.ACT_AB:
            self._require((self.banks < 0).all(), "ACT_AB to a bank with an open row")
            bounds = [
                self.row_bus_free,
                self.bank_closed.max() + t.nRP,
                self.bank_act.max() + t.nRC,
                self.bank_ref.max() + t.nRFC,
                self.group_act.max() + t.nRRDL,
                self.rank_act.max() + t.nRRDS,
                self.rank_acts[..., 0].max() + t.nFAW,
            ]
        elif cmd == Cmd.PRE_AB:
            bounds = [
                self.row_bus_free,
                self.bank_act.max() + t.nRAS,
                self.bank_read.max() + t.nRTP,
                self.bank_write.max() + t.nCWL + t.nBL + t.nWR,
                self.bank_ref.max() + t.nRFC,
            ]
        elif cmd == Cmd.REF_AB:
            self._require((self.banks < 0).all(), "REF_AB with a row open")
            bounds = [
                self.row_bus_free,
                self.bank_closed.max() + t.nRP,
                self.bank_act.max() + t.nRC,
                self.bank_ref.max() + t.nRFC,
            ]
        elif cmd == Cmd.MAC_AB:
            self._require((self.banks == row).all(), f"MAC_AB to row {row}, not open")
            bounds = [
                self.column_bus_free,
                self.bank_act.max() + t.nRCD,
                self.last_mac + t.nCCDAB,
                self.group_column.max() + t.nCCDL,
                self.rank_column.max() + t.nCCDS,
                self.group_write.max() + t.nCWL + t.nBL + t.nWTRL,
                self.buffer_write + t.nCCDS,
                # The global-buffer slots it reads must have landed (write latency + burst).
                self.buffer_write + t.nCWL + t.nBL,
            ]
        elif cmd == Cmd.WR_GB:
            bounds = [
                self.column_bus_free,
                self.buffer_write + t.nCCDL,
                self.group_column.max() + t.nCCDS,
                # Data bus: bursts do not overlap; after read data, nRTW turnaround.
                self.pc_write.max() + t.nBL,
                self.pc_read.max() + read_to_write,
            ]
        else:  # RD_OUT
            bounds = [
                self.column_bus_free,
                self.group_column.max() + t.nCCDL,
                self.rank_column.max() + t.nCCDS,
                self.group_write.max() + t.nCWL + t.nBL + t.nWTRL,
                self.buffer_write + t.nCCDS,
                self.pc_read.max() + t.nBL,
                # Write-to-read turnaround: nWTR after the write burst ends.
                self.pc_write.max() + write_to_read,
                # The last MAC's result must be in the accumulators.
                self.last_mac + t.nCL + t.nBL,
            ]
        return int(max(bounds))

    def _earliest_one(self, cmd: Cmd, row: int, address: tuple[int, int, int, int]) -> int:
        """`earliest` for a command to the one bank at `address`."""
        t = self.t
        group, rank, pc = address[:3], address[:2], address[0]
        open_row = self.banks[address]
        if cmd == Cmd.ACT:
            self._require(open_row < 0, f"ACT to bank {address} with row {open_row} open")
            bounds = [
                self.row_bus_free,
                self.bank_closed[address] + t.nRP,
                self.bank_act[address] + t.nRC,
                self.bank_ref[address] + t.nRFC,
                self.group_act[group] + t.nRRDL,
                self.rank_act[rank] + t.nRRDS,
                self.rank_acts[rank][0] + t.nFAW,
            ]
        elif cmd == Cmd.PRE:
            bounds = [
                self.row_bus_free,
                self.bank_act[address] + t.nRAS,
                self.bank_read[address] + t.nRTP,
                self.bank_write[address] + t.nCWL + t.nBL + t.nWR,
                self.bank_ref[address] + t.nRFC,
            ]
        else:  # RD, RDA, WR, WRA
            self._require(open_row == row, f"{cmd.name} to row {row} of bank {address}, not open")
            bounds = [
                self.column_bus_free,
                self.bank_act[address] + t.nRCD,
                self.group_column[group] + t.nCCDL,
                self.rank_column[rank] + t.nCCDS,
                self.buffer_write + t.nCCDS,
            ]
            if cmd in (Cmd.RD, Cmd.RDA):
                bounds += [
                    self.group_write[group] + t.nCWL + t.nBL + t.nWTRL,
                    self.pc_write[pc] + t.nCWL + t.nBL + t.nWTRS,
                    self.pc_read[pc] + t.nBL,
                ]
            else:
                bounds += [
                    self.pc_write[pc] + t.nBL,
                    self.pc_read[pc] + t.nCL + t.nBL + t.nRTW - t.nCWL,
                ]
        return int(max(bounds))

    def commit(self, cmd: Cmd, cycle: int, row: int, bank: int) -> None:
        """Record that `cmd` issued at `cycle`."""
        t = self.t
        every = ...
        if bank >= 0:
            address = self.geometry.address(bank)
            group, rank, pc = address[:3], address[:2], address[0]
        else:
            address = group = rank = pc = every
        if cmd in (Cmd.ACT_AB, Cmd.ACT):
            self.banks[address] = row
            self.bank_act[address] = cycle
            self.group_act[group] = cycle
            self.rank_act[rank] = cycle
            self.rank_acts[rank] = np.concatenate(
                [self.rank_acts[rank][..., 1:], np.full_like(self.rank_acts[rank][..., :1], cycle)],
                axis=-1,
            )
        elif cmd in (Cmd.PRE_AB, Cmd.PRE):
            self.banks[address] = -1
            self.bank_closed[address] = cycle
        elif cmd == Cmd.REF_AB:
            self.bank_ref[...] = cycle
        elif cmd == Cmd.MAC_AB:
            self.bank_read[...] = cycle
            self.group_column[...] = cycle
            self.rank_column[...] = cycle
            self.last_mac = cycle
        elif cmd == Cmd.WR_GB:
            self.buffer_write = cycle
            self.pc_write[...] = cycle
        elif cmd == Cmd.RD_OUT:
            self.group_column[...] = cycle
            self.rank_column[...] = cycle
            self.pc_read[...] = cycle
        else:  # RD, WR, RDA, WRA
            self.group_column[group] = cycle
            self.rank_column[rank] = cycle
            if cmd in (Cmd.RD, Cmd.RDA):
                self.bank_read[address] = cycle
                self.pc_read[pc] = cycle
                recovery = t.nRTP
            else:
                self.bank_write[address] = cycle
                self.group_write[group] = cycle
                self.pc_write[pc] = cycle
                recovery = t.nCWL + t.nBL + t.nWR
            if cmd in (Cmd.RDA, Cmd.WRA):
                # The bank precharges itself once the read (write recovery) and tRAS allow.
                self.banks[address] = -1
                self.bank_closed[address] = max(cycle + recovery, self.bank_act[address] + t.nRAS)
        if cmd in ROW_BUS_CYCLES:
            self.row_bus_free = cycle + ROW_BUS_CYCLES[cmd]
        else:
            self.column_bus_free = cycle + 1

    @staticmethod
    def _require(condition, what: str) -> None:
        if not condition:
            raise AssertionError(f"controller issued {what}")


class ReferenceSimulation(HbmSimulation):
    """An HBM-PIM program in flight on the reference engine: record by record, every macro
    expanded into its commands."""

    engine = "reference"

    def __init__(self, program: HbmProgram, hw, trace: bool = False,
                 tokens: dict[int, int] | None = None) -> None:
        super().__init__(program, hw, trace, tokens or {})
        hbm = hw.hbm
        rules = Rules.from_hbm(hbm)
        self.geometry = BankGeometry.of(hbm)
        self.channels = [
            ChannelController(ReferenceDevice(hbm), rules, trace)
            for _ in range(hbm.total_channels)
        ]
        self.rows = program.records.tolist()
        self.position = 0
        """The next record to carry out."""
        self.spans: list[tuple[int, int, int, int]] = []
        """(record, channel, start, end) of every record done on a channel."""

    def advance(self) -> bool:
        channels, geometry = self.channels, self.geometry
        count = len(channels)
        while self.position < len(self.rows):
            index = self.position
            op, lo, hi, row, col, n, _line, bank, *_context = self.rows[index]
            hi = count if hi < 0 else hi
            if op in (HbmOp.SIGNAL, HbmOp.WAIT) or (op == HbmOp.BARRIER and hi - lo > 1):
                if not self._sync(index, channels):
                    return False
                self.position += 1
                continue
            for number in range(lo, hi):
                channel = channels[number]
                channel.begin_item()
                if op in RAW_KINDS:
                    channel.instruction(RAW_KINDS[op], row, col, bank)
                elif op == HbmOp.GEMV:
                    for r in range(row, row + n):
                        for k in range(col):
                            channel.instruction(Cmd.MAC_AB, r, k)
                elif op == HbmOp.LOAD_GB:
                    for k in range(col):
                        channel.instruction(Cmd.WR_GB, -1, k)
                elif op == HbmOp.READOUT:
                    for _ in range(n):
                        channel.instruction(Cmd.RD_OUT)
                elif op in (HbmOp.READ, HbmOp.WRITE):
                    for first, shape in stream_passes(geometry, op == HbmOp.WRITE, row, n, col):
                        for cmd, target, offset, k in pass_commands(geometry, shape):
                            channel.instruction(cmd, first + offset, k, target)
                else:  # a barrier on one channel
                    channel.wait_until(channel.done)
                self.spans.append((index, number, *channel.span()))
            self.position += 1
        self.finished = True
        return True

    def _collect(self) -> HbmResult:
        channels = self.channels
        spans = np.array(self.spans, dtype=np.int64).reshape(-1, 4)
        return collect_result(
            self.hw,
            "reference",
            [channel.done for channel in channels],
            [sum(channel.counts[cmd] for channel in channels) for cmd in Cmd],
            [sum(channel.by_controller[cmd] for channel in channels) for cmd in Cmd],
            [(index, channel.pieces) for index, channel in enumerate(channels)]
            if self.trace
            else None,
            self.timeline(spans[:, 0], spans[:, 1], spans[:, 2], spans[:, 3]),
        )


def simulate_reference(
    program: HbmProgram, hw, trace: bool = False, tokens: dict[int, int] | None = None
) -> HbmResult:
    """Simulate a validated, bound, plain (`expand_sections`) `program` command by command;
    `tokens` are cycles at which other streams raise tokens."""
    return ReferenceSimulation(program, hw, trace, tokens).run()
