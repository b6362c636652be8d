"""The DRAM commands an HBM-PIM channel controller issues, and the timing rules between them.

`Cmd` names the device commands that appear in a command trace: the all-bank row commands
(`ACT_AB`, `PRE_AB`, the controller's `REF_AB`) and the column commands (`MAC_AB`, `WR_GB`,
`RD_OUT`). `Rules` derives, from a preset's `HbmTiming`, what the fast engine needs: the minimum
gap between the most recent command of one kind and the next command of another kind (every
JEDEC rule and PIM rule folded into one 6 x 6 table), the four-activate window, and each
command's completion latency. The reference engine does not use the table: it checks the
underlying per-bank, per-bank-group and per-rank rules against explicit state, and the tests
prove the two agree. `docs/hbm-engine.md` states every rule and why it holds.
"""

from dataclasses import dataclass
from enum import IntEnum

from hpim_ir.errors import HpimError

NEVER = -(1 << 50)
"""The issue cycle of a command that has not happened: far enough back that no gap reaches 0."""


class Cmd(IntEnum):
    """A command on a channel's command buses, as it appears in the command trace."""

    ACT_AB = 0
    """Activate one row in every bank of the channel (both pseudo-channels, all ranks)."""
    PRE_AB = 1
    """Precharge every bank of the channel."""
    REF_AB = 2
    """All-bank refresh, issued by the controller every nREFI."""
    MAC_AB = 3
    """Every bank reads one column of its open row into its PU, which MACs it with one
    global-buffer slot."""
    WR_GB = 4
    """A 32 B burst on the data bus into one slot of the channel's global buffer."""
    RD_OUT = 5
    """A 32 B burst of accumulated results from the bank PUs onto the data bus."""


ROW_COMMANDS = frozenset({Cmd.ACT_AB, Cmd.PRE_AB, Cmd.REF_AB})
COLUMN_COMMANDS = frozenset({Cmd.MAC_AB, Cmd.WR_GB, Cmd.RD_OUT})

ROW_BUS_CYCLES = {Cmd.ACT_AB: 2, Cmd.PRE_AB: 1, Cmd.REF_AB: 1}
"""Cycles a row command occupies the row command bus (an HBM3 ACT is a two-cycle command)."""


@dataclass(frozen=True)
class Rules:
    """The timing of one preset in the form the controller and the fast engine use.

    `gap[p][c]` is the minimum number of cycles from the most recent command of kind `p` to a
    command of kind `c` (`NEVER` where no rule relates them). Because every gap is a constant
    per pair of kinds and every command of a channel addresses all of its banks, the most
    recent command of each kind is the only one that can bind, so `max(last[p] + gap[p][c])`
    (plus the four-activate window for `ACT_AB`) is the earliest legal cycle.
    """

    gap: tuple[tuple[int, ...], ...]
    faw: int
    """nFAW: at most four ACTs of a rank in any window of this many cycles."""
    completion: tuple[int, ...]
    """Cycles from issue until a command is complete (see `docs/hbm-engine.md`)."""
    refresh_interval: int
    """nREFI: refresh k is due at cycle k * nREFI."""

    @staticmethod
    def from_hbm(hbm) -> "Rules":
        """Fold an `HbmConfig`'s timing into the pairwise table."""
        t = hbm.timing
        # A refresh closes the row a pending MAC needs. The controller must be able to close
        # the row, refresh, reopen it and issue the MAC before the next refresh falls due, or
        # it would refresh forever: REF is at most max(nRAS + nRP, nRTP + nRP, nRC) after
        # the due cycle, the ACT at most max(nRFC, nFAW, nRC, nRRD) after the REF.
        refresh_turn = (
            max(t.nRAS + t.nRP, t.nRTP + t.nRP, t.nRC)
            + max(t.nRFC, t.nFAW, t.nRC, t.nRRDL, t.nRRDS)
            + t.nRCD
        )
        if t.nREFI <= refresh_turn:
            raise HpimError(
                f"hbm.timing.nREFI = {t.nREFI} leaves no time between refreshes: it must "
                f"exceed max(nRAS + nRP, nRTP + nRP, nRC) + max(nRFC, nFAW, nRC, nRRDL, "
                f"nRRDS) + nRCD = {refresh_turn} cycles"
            )
        several_groups = hbm.bank_groups > 1
        # Column commands to the same target (the bank groups' arrays and PUs, or the global
        # buffer) are nCCD_L apart; to the other target nCCD_S. With one bank group per rank
        # there is no "other bank group", so nCCD_S / nRRD_S never apply between bank
        # accesses.
        ccd_same = max(t.nCCDL, t.nCCDS if several_groups else 1)
        rrd = max(t.nRRDL, t.nRRDS if several_groups else 1)
        burst = t.nBL
        read_latency = t.nCL + t.nBL
        write_latency = t.nCWL + t.nBL
        gap = [[NEVER] * len(Cmd) for _ in Cmd]

        def rule(before: Cmd, after: Cmd, cycles: int) -> None:
            gap[before][after] = max(gap[before][after], cycles)

        # Row commands: bank rules, plus the row bus (one command at a time, ACT takes two).
        for before in ROW_COMMANDS:
            for after in ROW_COMMANDS:
                rule(before, after, ROW_BUS_CYCLES[before])
        rule(Cmd.ACT_AB, Cmd.ACT_AB, max(t.nRC, rrd))
        rule(Cmd.ACT_AB, Cmd.PRE_AB, t.nRAS)
        rule(Cmd.ACT_AB, Cmd.REF_AB, t.nRC)
        rule(Cmd.ACT_AB, Cmd.MAC_AB, t.nRCD)
        rule(Cmd.PRE_AB, Cmd.ACT_AB, t.nRP)
        rule(Cmd.PRE_AB, Cmd.REF_AB, t.nRP)
        for after in ROW_COMMANDS:
            rule(Cmd.REF_AB, after, t.nRFC)
        rule(Cmd.MAC_AB, Cmd.PRE_AB, t.nRTP)
        # Column commands: the column bus carries one command per cycle.
        for before in COLUMN_COMMANDS:
            for after in COLUMN_COMMANDS:
                rule(before, after, 1)
        rule(Cmd.MAC_AB, Cmd.MAC_AB, max(t.nCCDAB, ccd_same))
        rule(Cmd.MAC_AB, Cmd.RD_OUT, max(ccd_same, read_latency))
        rule(Cmd.RD_OUT, Cmd.MAC_AB, ccd_same)
        rule(Cmd.RD_OUT, Cmd.RD_OUT, max(ccd_same, burst))
        rule(Cmd.WR_GB, Cmd.WR_GB, max(t.nCCDL, burst))
        rule(Cmd.MAC_AB, Cmd.WR_GB, t.nCCDS)
        rule(Cmd.WR_GB, Cmd.MAC_AB, max(t.nCCDS, write_latency))
        rule(Cmd.WR_GB, Cmd.RD_OUT, max(t.nCCDS, write_latency + t.nWTRS))
        rule(Cmd.RD_OUT, Cmd.WR_GB, max(t.nCCDS, read_latency + t.nRTW - t.nCWL))
        completion = [0] * len(Cmd)
        completion[Cmd.ACT_AB] = t.nRCD
        completion[Cmd.PRE_AB] = t.nRP
        completion[Cmd.REF_AB] = t.nRFC
        completion[Cmd.MAC_AB] = read_latency
        completion[Cmd.WR_GB] = write_latency
        completion[Cmd.RD_OUT] = read_latency
        return Rules(
            gap=tuple(tuple(row) for row in gap),
            faw=t.nFAW,
            completion=tuple(completion),
            refresh_interval=t.nREFI,
        )
