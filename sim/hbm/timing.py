"""The DRAM commands an HBM-PIM channel controller issues, and the timing rules between them.

`Cmd` names the device commands that appear in a command trace: the all-bank commands of PIM
mode (`ACT_AB`, `PRE_AB`, the controller's `REF_AB`, `MAC_AB`), the global-buffer and
PU-output bursts (`WR_GB`, `RD_OUT`) and the single-bank commands of normal mode (`ACT`,
`PRE`, `RD`, `WR`, `RDA`, `WRA`). `Rules` states every timing rule once, as data: which earlier
events constrain which later commands, at which scope (the same bank, bank group, rank,
pseudo-channel, or anywhere on the channel) and by how many cycles; `docs/hbm-engine.md`
prints the same table and says why each rule holds. From the rules it derives what the fast
engine needs: gaps that hold wherever the two commands are (`gap`) and gaps that hold only
within a shared scope (`scope_gap`). The reference engine does not use them: it checks each
rule against explicit per-bank, per-bank-group, per-rank and per-pseudo-channel state, and the
tests prove the two agree.
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
    ACT = 6
    """Activate one row in one bank."""
    PRE = 7
    """Precharge one bank."""
    RD = 8
    """Read one column of one bank's open row: a 32 B burst on its pseudo-channel's data bus."""
    WR = 9
    """Write one column of one bank's open row from its pseudo-channel's data bus."""
    RDA = 10
    """`RD` with auto-precharge: the bank closes by itself once the read allows it."""
    WRA = 11
    """`WR` with auto-precharge."""


AUTO_PRE = len(Cmd)
"""An event that is no command: the internal precharge of a bank after `RDA` / `WRA`."""
EVENTS = len(Cmd) + 1
"""Kinds of events a rule can start from: every command, and `AUTO_PRE`."""

ROW_COMMANDS = frozenset({Cmd.ACT_AB, Cmd.PRE_AB, Cmd.REF_AB, Cmd.ACT, Cmd.PRE})
COLUMN_COMMANDS = frozenset(Cmd) - ROW_COMMANDS
BANK_COMMANDS = frozenset({Cmd.ACT, Cmd.PRE, Cmd.RD, Cmd.WR, Cmd.RDA, Cmd.WRA})
"""Commands that address one bank; the others address all banks of the channel (or none)."""
ALL_BANK_COMMANDS = frozenset({Cmd.ACT_AB, Cmd.PRE_AB, Cmd.REF_AB, Cmd.MAC_AB})

ACTIVATES = frozenset({Cmd.ACT, Cmd.ACT_AB})
PRECHARGES = frozenset({Cmd.PRE, Cmd.PRE_AB})
CLOSES = PRECHARGES | {AUTO_PRE}
"""Events after which a bank is precharged."""
READS = frozenset({Cmd.RD, Cmd.RDA})
WRITES = frozenset({Cmd.WR, Cmd.WRA})
OPENS_NEEDED = READS | WRITES | {Cmd.MAC_AB}
"""Commands that access an open row."""
ARRAY_READS = READS | {Cmd.MAC_AB}
GROUP_COLUMNS = READS | WRITES | {Cmd.MAC_AB, Cmd.RD_OUT}
"""Column commands that use a bank group's column path (MAC_AB, RD_OUT: every bank group's)."""
GROUP_READS = READS | {Cmd.MAC_AB, Cmd.RD_OUT}
BUS_READS = READS | {Cmd.RD_OUT}
"""Bursts from the device on a pseudo-channel's data bus (RD_OUT: on every pseudo-channel's)."""
BUS_WRITES = WRITES | {Cmd.WR_GB}

ROW_BUS_CYCLES = {Cmd.ACT_AB: 2, Cmd.PRE_AB: 1, Cmd.REF_AB: 1, Cmd.ACT: 2, Cmd.PRE: 1}
"""Cycles a row command occupies the row command bus (an HBM3 ACT is a two-cycle command)."""


class Level(IntEnum):
    """The scopes a rule can hold in, from the smallest."""

    BANK = 0
    GROUP = 1
    """One bank group of one rank of one pseudo-channel."""
    RANK = 2
    """One rank (stack ID) of one pseudo-channel."""
    PSEUDO_CHANNEL = 3
    CHANNEL = 4


SCOPES = (Level.BANK, Level.GROUP, Level.RANK, Level.PSEUDO_CHANNEL)
"""The levels below the channel, where a single-bank command reaches one unit."""


def reaches(event: int, level: Level) -> str:
    """How much of `level` an event reaches: `one` unit (the addressed bank's), `all`, or
    `none`. A single-bank command reaches its own bank, group, rank and pseudo-channel; an
    all-bank command and RD_OUT every unit; WR_GB only the data bus of every pseudo-channel."""
    if level == Level.CHANNEL:
        return "all"
    if event in BANK_COMMANDS or event == AUTO_PRE:
        return "one"
    if event == Cmd.WR_GB:
        return "all" if level == Level.PSEUDO_CHANNEL else "none"
    return "all"


@dataclass(frozen=True)
class Rule:
    """A later command of `later` issues at least `cycles` after every earlier event of
    `earlier` in the same unit of `level` (`name`: the JEDEC or PIM name of the rule)."""

    name: str
    earlier: frozenset[int]
    later: frozenset[int]
    level: Level
    cycles: int


def timing_rules(t) -> list[Rule]:
    """Every rule between commands of one channel, for an `HbmTiming` `t`."""
    write_recovery = t.nCWL + t.nBL + t.nWR
    bank, group, rank, pc, channel = Level
    return [
        # Row cycle of a bank.
        Rule("tRC", ACTIVATES, ACTIVATES | {Cmd.REF_AB}, bank, t.nRC),
        Rule("tRCD", ACTIVATES, OPENS_NEEDED, bank, t.nRCD),
        Rule("tRAS", ACTIVATES, PRECHARGES, bank, t.nRAS),
        Rule("tRP", CLOSES, ACTIVATES | {Cmd.REF_AB}, bank, t.nRP),
        Rule("tRTP", ARRAY_READS, PRECHARGES, bank, t.nRTP),
        Rule("tWR", WRITES, PRECHARGES, bank, write_recovery),
        Rule("tRFC", {Cmd.REF_AB}, ACTIVATES | PRECHARGES | {Cmd.REF_AB}, bank, t.nRFC),
        # Activations.
        Rule("tRRD_L", ACTIVATES, ACTIVATES, group, t.nRRDL),
        Rule("tRRD_S", ACTIVATES, ACTIVATES, rank, t.nRRDS),
        # Column commands.
        Rule("tCCD_L", GROUP_COLUMNS, GROUP_COLUMNS, group, t.nCCDL),
        Rule("tCCD_S", GROUP_COLUMNS, GROUP_COLUMNS, rank, t.nCCDS),
        Rule("tWTR_L", WRITES, GROUP_READS, group, t.nCWL + t.nBL + t.nWTRL),
        # Data bus of a pseudo-channel: bursts do not overlap; turnarounds.
        Rule("burst", BUS_READS, BUS_READS, pc, t.nBL),
        Rule("burst", BUS_WRITES, BUS_WRITES, pc, t.nBL),
        Rule("tRTW", BUS_READS, BUS_WRITES, pc, t.nCL + t.nBL + t.nRTW - t.nCWL),
        Rule("tWTR_S", BUS_WRITES, BUS_READS, pc, t.nCWL + t.nBL + t.nWTRS),
        # The channel's command buses.
        Rule("row bus", {Cmd.ACT, Cmd.ACT_AB}, ROW_COMMANDS, channel, 2),
        Rule("row bus", {Cmd.PRE, Cmd.PRE_AB, Cmd.REF_AB}, ROW_COMMANDS, channel, 1),
        Rule("column bus", COLUMN_COMMANDS, COLUMN_COMMANDS, channel, 1),
        # PIM: MAC pacing, the global buffer (the channel's one other column target), data
        # dependencies through the buffer and the PU accumulators.
        Rule("tCCDAB", {Cmd.MAC_AB}, {Cmd.MAC_AB}, channel, t.nCCDAB),
        Rule("tCCD_L", {Cmd.WR_GB}, {Cmd.WR_GB}, channel, t.nCCDL),
        Rule("tCCD_S", {Cmd.WR_GB}, GROUP_COLUMNS, channel, t.nCCDS),
        Rule("tCCD_S", GROUP_COLUMNS, {Cmd.WR_GB}, channel, t.nCCDS),
        Rule("buffer data", {Cmd.WR_GB}, {Cmd.MAC_AB}, channel, t.nCWL + t.nBL),
        Rule("MAC result", {Cmd.MAC_AB}, {Cmd.RD_OUT}, channel, t.nCL + t.nBL),
    ]


def auto_precharge_delay(t) -> dict[Cmd, int]:
    """Cycles from RDA / WRA to the bank's internal precharge (also no earlier than its ACT +
    nRAS): the read-to-precharge and write-recovery times of an explicit PRE."""
    return {Cmd.RDA: t.nRTP, Cmd.WRA: t.nCWL + t.nBL + t.nWR}


def completion_cycles(t) -> dict[Cmd, int]:
    """Cycles from issue until a command is complete (see `docs/hbm-engine.md`)."""
    read, write = t.nCL + t.nBL, t.nCWL + t.nBL
    return {
        Cmd.ACT_AB: t.nRCD, Cmd.ACT: t.nRCD,
        Cmd.PRE_AB: t.nRP, Cmd.PRE: t.nRP,
        Cmd.REF_AB: t.nRFC,
        Cmd.MAC_AB: read, Cmd.RD_OUT: read, Cmd.RD: read, Cmd.RDA: read,
        Cmd.WR_GB: write, Cmd.WR: write, Cmd.WRA: write,
    }  # fmt: skip


@dataclass(frozen=True)
class Rules:
    """The timing of one preset in the form the controller and the fast engine use.

    `gap[p][c]`: the minimum number of cycles from the most recent event of kind `p`
    anywhere on the channel to a command `c`, from the rules whose scope the two share
    wherever they are (one of them reaches every unit of the level); `NEVER` where no rule
    relates them. `scope_gap[level][p][c]`: the minimum between two single-bank events that
    share the unit of `level`. Because each is a constant per pair of kinds, the most recent
    event of each kind (per unit) is the only one that can bind, so the earliest legal cycle
    is a maximum over them, plus the four-activate window for ACTs.
    """

    gap: tuple[tuple[int, ...], ...]
    scope_gap: tuple[tuple[tuple[int, ...], ...], ...]
    """Per level in `SCOPES`."""
    faw: int
    """nFAW: at most four activations of a rank in any window of this many cycles."""
    ras: int
    """nRAS, which also bounds an auto-precharge from below."""
    auto_precharge: dict[Cmd, int]
    completion: tuple[int, ...]
    refresh_interval: int
    """nREFI: refresh k is due at cycle k * nREFI."""
    refresh_turn: int
    """The longest a pending command can take to issue after the cycle its row may first be
    closed (for a refresh): less than nREFI, so that the controller never refreshes forever."""
    horizon: int
    """The largest gap of any rule: an event older than this can no longer bind."""

    @staticmethod
    def from_hbm(hbm) -> "Rules":
        """Derive the tables from an `HbmConfig`'s timing."""
        t = hbm.timing
        # A refresh closes the row a pending command needs. The controller must be able to
        # close it, refresh, reopen it and issue the command before the next refresh falls
        # due, or it would refresh forever: REF is at most max(nRAS + nRP, nRTP + nRP,
        # nCWL + nBL + nWR + nRP, nRC) after the due cycle, the ACT at most max(nRFC, nFAW,
        # nRC, nRRD) after the REF.
        refresh_turn = (
            max(t.nRAS + t.nRP, t.nRTP + t.nRP, t.nCWL + t.nBL + t.nWR + t.nRP, t.nRC)
            + max(t.nRFC, t.nFAW, t.nRC, t.nRRDL, t.nRRDS)
            + t.nRCD
        )
        if t.nREFI <= refresh_turn:
            raise HpimError(
                f"hbm.timing.nREFI = {t.nREFI} leaves no time between refreshes: it must "
                f"exceed max(nRAS + nRP, nRTP + nRP, nCWL + nBL + nWR + nRP, nRC) + max(nRFC, "
                f"nFAW, nRC, nRRDL, nRRDS) + nRCD = {refresh_turn} cycles"
            )
        gap = [[NEVER] * len(Cmd) for _ in range(EVENTS)]
        scope_gap = [[[NEVER] * len(Cmd) for _ in range(EVENTS)] for _ in SCOPES]
        for rule in timing_rules(t):
            for p in rule.earlier:
                for c in rule.later:
                    reach = (reaches(p, rule.level), reaches(c, rule.level))
                    if "none" in reach:
                        continue
                    table = gap if "all" in reach else scope_gap[rule.level]
                    table[p][c] = max(table[p][c], rule.cycles)
        completion = completion_cycles(t)
        return Rules(
            gap=tuple(tuple(row) for row in gap),
            scope_gap=tuple(tuple(tuple(row) for row in level) for level in scope_gap),
            faw=t.nFAW,
            ras=t.nRAS,
            auto_precharge=auto_precharge_delay(t),
            completion=tuple(completion[cmd] for cmd in Cmd),
            refresh_interval=t.nREFI,
            refresh_turn=refresh_turn,
            horizon=max([rule.cycles for rule in timing_rules(t)] + [t.nFAW]),
        )
