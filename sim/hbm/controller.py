"""The per-channel HBM-PIM memory controller: in-order issue, open-page policy, refresh.

`ChannelController` owns the policy that turns one channel's program instructions into device
commands, and is shared by both engines; the timing state it consults is a device model
(`reference.ReferenceDevice`: every bank explicit; `fast.FastDevice`: flat tables). The
policy:

- Commands issue in program order (an in-order PIM controller, as all-bank commands need):
  each issues at the earliest cycle that satisfies every timing rule, is no earlier than the
  command before it, and no earlier than the channel's barrier floor.
- Open page, per bank: `rd`, `wr`, `rda`, `wra` or `act` to a bank whose open row is another
  makes the controller precharge that bank and activate the row first; to a closed bank it
  activates first. `mac_ab` / `act_ab` need the row open in every bank: otherwise the
  controller precharges all banks (if any is open) and activates the row in all of them.
  A command that would change nothing issues nothing: `act` / `act_ab` of rows already open,
  `pre` / `pre_ab` of closed banks (a controller never sends an ACT to an open bank).
- Refresh: refresh k falls due at cycle k * nREFI. Before issuing any command whose earliest
  cycle is at or after the due cycle, the controller refreshes: it precharges all banks if
  any is open (no earlier than the due cycle) and issues `REF_AB` (all banks of the
  channel). If the banks had different rows open (normal mode), it then reopens each of them
  with an `ACT`, in bank order, as early as the rules allow, as long as the pending command
  surely still fits before the next refresh (`Rules.refresh_turn`); rows open alike in every
  bank (PIM mode) are reopened by the next all-bank command with one `ACT_AB`. Then it
  re-plans the pending command. Nothing is
  postponed, and a refresh never interrupts a command already issued. Refreshes that fall
  due while the channel waits at a barrier are issued on time during the wait; once a
  channel has no commands left it issues no more.
"""

from hpim_ir.sim.hbm.program import HbmOp
from hpim_ir.sim.hbm.timing import ALL_BANK_COMMANDS, BANK_COMMANDS, Cmd, Rules

Piece = tuple
"""A stretch of the command trace: (first cycle, step, count, command, row, column, bank),
`count` commands `step` cycles apart; any field after `count` (and the first cycle, with
step 0) may be an array of `count` values instead of one."""

RAW_KINDS = {
    HbmOp.WR_GB: Cmd.WR_GB,
    HbmOp.MAC_AB: Cmd.MAC_AB,
    HbmOp.ACT_AB: Cmd.ACT_AB,
    HbmOp.PRE_AB: Cmd.PRE_AB,
    HbmOp.RD_OUT: Cmd.RD_OUT,
    HbmOp.ACT: Cmd.ACT,
    HbmOp.PRE: Cmd.PRE,
    HbmOp.RD: Cmd.RD,
    HbmOp.WR: Cmd.WR,
    HbmOp.RDA: Cmd.RDA,
    HbmOp.WRA: Cmd.WRA,
}
"""Raw instructions: one command each, its row, column and bank those of the record."""

ROW_COMMANDS = frozenset({Cmd.ACT_AB, Cmd.MAC_AB, Cmd.ACT, Cmd.RD, Cmd.WR, Cmd.RDA, Cmd.WRA})
"""Commands whose trace line carries the row of the instruction they serve."""


class ChannelController:
    """One channel's controller. `device` is the timing model of the channel's banks."""

    def __init__(self, device, rules: Rules, trace: bool) -> None:
        self.device = device
        self.rules = rules
        self.t_last = 0
        """Issue cycle of the latest command (in-order issue)."""
        self.floor = 0
        """No command issues before this cycle (barriers, token waits)."""
        self.done = 0
        """The cycle by which every command issued so far has completed."""
        self.next_refresh = rules.refresh_interval
        self.counts = [0] * len(Cmd)
        self.by_controller = [0] * len(Cmd)
        """Of `counts`, the commands the controller added (row misses, refresh)."""
        self.pieces: list[Piece] | None = [] if trace else None
        self.first: int | None = None
        """Issue cycle of the first command (refreshes aside) of the current instruction."""
        self.finish = -1
        """The latest completion of a command issued for the current instruction (-1: none)."""
        self.log: list[tuple] | None = None
        """When a list: every command issued, as (cycle, command, row, column, bank,
        by_controller)."""
        self.reopen_last: int | None = None
        """The last refresh's last reopened row: its ACT's issue cycle (None: none)."""
        self.reopen_cut = False
        """Whether the last refresh left rows closed that were open (see `_refresh`)."""

    def begin_item(self) -> None:
        """The next commands serve a new program instruction (see `span`)."""
        self.first, self.finish = None, -1

    def span(self) -> tuple[int, int]:
        """The current instruction's interval: from its first command, refreshes aside, to
        the completion of its last command (refreshes included). An instruction that issued
        nothing (a barrier, a row already open) is the point `max(floor, t_last)`."""
        if self.first is None:
            point = max(self.floor, self.t_last)
            return point, point
        return self.first, self.finish

    def instruction(self, kind: Cmd, row: int = -1, col: int = -1, bank: int = -1) -> int | None:
        """Carry out one program instruction of `kind` (any `Cmd` but `REF_AB`) on `bank`
        (single-bank commands), with whatever PRE / ACT / REF it needs first. Returns the
        issue cycle of the instruction's own command, or None if it was absorbed (row
        already open / closed)."""
        while True:
            cmd = self._next_command(kind, row, bank)
            if cmd is None:
                return None
            t = max(self.device.earliest(cmd, row, bank), self.t_last, self.floor)
            if t >= self.next_refresh:
                self._refresh()
                continue
            own = cmd == kind
            self._issue(
                cmd,
                t,
                row if cmd in ROW_COMMANDS else -1,
                col if own else -1,
                bank if cmd in BANK_COMMANDS else -1,
                by_controller=not own,
            )
            if own:
                return t

    def wait_until(self, cycle: int) -> None:
        """Later commands issue no earlier than `cycle` (a barrier or a token)."""
        self.floor = max(self.floor, cycle)

    def _next_command(self, kind: Cmd, row: int, bank: int) -> Cmd | None:
        device = self.device
        if kind in ALL_BANK_COMMANDS and kind != Cmd.PRE_AB:  # MAC_AB, ACT_AB
            if device.all_open(row):
                return Cmd.MAC_AB if kind == Cmd.MAC_AB else None
            return Cmd.PRE_AB if device.any_open() else Cmd.ACT_AB
        if kind == Cmd.PRE_AB:
            return Cmd.PRE_AB if device.any_open() else None
        if kind == Cmd.PRE:
            return Cmd.PRE if device.open[bank] >= 0 else None
        if kind in BANK_COMMANDS:  # ACT, RD, WR, RDA, WRA
            open_row = device.open[bank]
            if open_row == row:
                return None if kind == Cmd.ACT else kind
            return Cmd.PRE if open_row >= 0 else Cmd.ACT
        return kind

    def _refresh(self) -> None:
        device, due = self.device, self.next_refresh
        rows = list(device.open)
        # Single-bank rows are reopened bank by bank; a row open in every bank is not.
        reopen = [] if rows.count(rows[0]) == len(rows) else [
            (bank, row) for bank, row in enumerate(rows) if row >= 0
        ]
        if device.any_open():
            t = max(device.earliest(Cmd.PRE_AB, -1, -1), self.t_last, due)
            self._issue(Cmd.PRE_AB, t, -1, -1, -1, by_controller=True, refresh=True)
        t = max(device.earliest(Cmd.REF_AB, -1, -1), self.t_last, due)
        self._issue(Cmd.REF_AB, t, -1, -1, -1, by_controller=True, refresh=True)
        self.next_refresh = due + self.rules.refresh_interval
        self.reopen_last, self.reopen_cut = None, False
        for bank, row in reopen:
            t = max(device.earliest(Cmd.ACT, row, bank), self.t_last)
            # Only while the pending command surely still fits before the next refresh
            # (otherwise the reopened rows could push it past, refresh after refresh).
            if t + self.rules.refresh_turn >= self.next_refresh:
                self.reopen_cut = True
                break
            self._issue(Cmd.ACT, t, row, -1, bank, by_controller=True, refresh=True)
            self.reopen_last = t

    def _issue(
        self,
        cmd: Cmd,
        t: int,
        row: int,
        col: int,
        bank: int,
        by_controller: bool,
        refresh: bool = False,
    ) -> None:
        self.device.commit(cmd, t, row, bank)
        self.t_last = t
        completion = t + self.rules.completion[cmd]
        self.done = max(self.done, completion)
        self.finish = max(self.finish, completion)
        if self.first is None and not refresh:
            self.first = t
        if self.log is not None:
            self.log.append((t, cmd, row, col, bank, by_controller))
        self.counts[cmd] += 1
        if by_controller:
            self.by_controller[cmd] += 1
        if self.pieces is not None:
            self.pieces.append((t, 0, 1, int(cmd), row, col, bank))
