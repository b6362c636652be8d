"""The per-channel HBM-PIM memory controller: in-order issue, open-page policy, refresh.

`ChannelController` owns the policy that turns one channel's program instructions into device
commands, and is shared by both engines; the timing state it consults is a device model
(`reference.ReferenceDevice`: every bank explicit; `fast.FastDevice`: the lock-step banks as
one). The policy:

- Commands issue in program order (an in-order PIM controller, as all-bank commands need):
  each issues at the earliest cycle that satisfies every timing rule, is no earlier than the
  command before it, and no earlier than the channel's barrier floor.
- Open page: `mac_ab` to a row that is not open makes the controller precharge (if another row
  is open) and activate it first. `act_ab` of the open row and `pre_ab` of closed banks change
  nothing and issue nothing (a controller never sends an ACT to an open bank).
- Refresh: refresh k falls due at cycle k * nREFI. Before issuing any command whose earliest
  cycle is at or after the due cycle, the controller refreshes: it precharges if a row is open
  (no earlier than the due cycle), issues `REF_AB` (all banks of the channel), and then
  re-plans the pending command, which reopens its row after nRFC. Nothing is postponed, and
  a refresh never interrupts a command already issued. Refreshes that fall due while the
  channel waits at a barrier are issued on time during the wait; once a channel has no
  commands left it issues no more.
"""

from hpim_ir.sim.hbm.timing import Cmd, Rules

Piece = tuple[int, int, int, int, int, object]
"""(first cycle, step, count, command, row, column(s)): `count` commands `step` cycles apart."""


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

    def instruction(self, kind: Cmd, row: int = -1, col: int = -1) -> int | None:
        """Carry out one program instruction of `kind` (`ACT_AB`, `PRE_AB`, `MAC_AB`, `WR_GB`,
        `RD_OUT`), with whatever PRE / ACT / REF it needs first. Returns the issue cycle of the
        instruction's own command, or None if it was absorbed (row already open / closed)."""
        while True:
            cmd = self._next_command(kind, row)
            if cmd is None:
                return None
            t = max(self.device.earliest(cmd, row), self.t_last, self.floor)
            if t >= self.next_refresh:
                self._refresh()
                continue
            own = cmd == kind
            self._issue(
                cmd,
                t,
                row if cmd in (Cmd.ACT_AB, Cmd.MAC_AB) else -1,
                col if own else -1,
                by_controller=not own,
            )
            if own:
                return t

    def wait_until(self, cycle: int) -> None:
        """Later commands issue no earlier than `cycle` (a barrier or a token)."""
        self.floor = max(self.floor, cycle)

    def _next_command(self, kind: Cmd, row: int) -> Cmd | None:
        open_row = self.device.open_row
        if kind in (Cmd.MAC_AB, Cmd.ACT_AB):
            if open_row == row:
                return Cmd.MAC_AB if kind == Cmd.MAC_AB else None
            return Cmd.PRE_AB if open_row >= 0 else Cmd.ACT_AB
        if kind == Cmd.PRE_AB:
            return Cmd.PRE_AB if open_row >= 0 else None
        return kind

    def _refresh(self) -> None:
        due = self.next_refresh
        if self.device.open_row >= 0:
            t = max(self.device.earliest(Cmd.PRE_AB, -1), self.t_last, due)
            self._issue(Cmd.PRE_AB, t, -1, -1, by_controller=True)
        t = max(self.device.earliest(Cmd.REF_AB, -1), self.t_last, due)
        self._issue(Cmd.REF_AB, t, -1, -1, by_controller=True)
        self.next_refresh = due + self.rules.refresh_interval

    def _issue(self, cmd: Cmd, t: int, row: int, col: int, by_controller: bool) -> None:
        self.device.commit(cmd, t, row)
        self.t_last = t
        self.done = max(self.done, t + self.rules.completion[cmd])
        self.counts[cmd] += 1
        if by_controller:
            self.by_controller[cmd] += 1
        if self.pieces is not None:
            self.pieces.append((t, 0, 1, int(cmd), row, col))
