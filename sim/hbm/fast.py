"""The fast HBM-PIM engine: the reference engine's results, without per-command work.

Exact shortcuts, each proved against `reference.py` (and against themselves turned off) by
the tests:

1. Flat tables. `FastDevice` keeps the most recent event of each kind on the channel and, for
   single-bank commands, per bank, bank group, rank and pseudo-channel, in one flat list; a
   command's earliest cycle is one maximum over precomputed (slot, gap) pairs from the rule
   tables of `timing.Rules`. All-bank commands reach every bank alike, so they need only the
   channel-wide entries: in PIM mode the banks are one state.
2. Closed form per run. After the first of a run of identical all-bank column commands
   (`MAC_AB`s to one row, `WR_GB`s, `RD_OUT`s) every other bound is already met, so command
   i of the run issues at `t0 + i * gap[c][c]`; the run only breaks where a refresh falls
   due, at `(next_refresh - 1 - t0) // gap` commands. A PIM macro (`gemv`, `load_gb`,
   `readout`) is such runs (one per GEMV row) and is never expanded into commands.
3. Memoized runs. A run of a PIM macro that starts in an all-bank state (no single-bank
   event within the rules' reach, every bank at one row) depends only on the all-bank
   entries relative to its start and on whether its row is open: a run seen in the same
   state is replayed, shifted, if it ends before the next refresh falls due
   (`FastController.macro_run`); the run after a known one is found from it directly, and
   so is a whole GEMV whose rows were all known runs (`FastController.gemv`).
4. Memoized passes. A normal-mode macro (`read`, `write`) is a sequence of passes
   (`normal.py`). A pass's timing depends only on its shape and on the channel's state
   relative to the pass's start: times minus the start cycle (times older than every rule's
   reach, `Rules.horizon`, all alike) and open rows minus the pass's row. A pass simulated
   once is replayed from that key in any later pass that finds the same relative state and
   ends before the next refresh falls due; in a long read that is every pass but those
   around a refresh. A known pass a refresh interrupts is resumed (its commands before the
   due cycle as they were), and stored whole under the command the refresh interrupted when
   the refresh's precharge could not have issued earlier anyway: then the due cycle changes
   nothing, and the next pass interrupted at the same command is replayed whole. A pass in
   a new state with a refresh inside is stored under its key and the due cycle relative to
   its start, and replayed where both repeat.
5. Memoized channels. The program is split into segments at cross-channel synchronization
   (barriers over several channels, signal, wait); within a segment channels are
   independent, and a channel's result depends only on its instructions and its state on
   entry. Channels with identical instructions (channel numbers aside) and identical entry
   state are simulated once; the others copy the result.
6. Shifted channels. A channel's instructions in a segment (a group) that are another
   group's with every row moved by the same offset, entered in the same state relative to
   the group's start and that offset, repeat that group shifted in time and rows, as long
   as no refresh falls due before its last command (refreshes fall at absolute times, the
   only thing that tells one layer of a compiled step from another).

The program is split into per-channel instruction lists and runs with numpy; Python loops
only over runs, row changes, passes and refreshes.
"""

import bisect
from functools import cache
from operator import add

import numpy as np

from hpim_ir.sim.hbm.controller import RAW_KINDS, ROW_COMMANDS, ChannelController
from hpim_ir.sim.hbm.engine import HbmResult, HbmSimulation, collect_result
from hpim_ir.sim.hbm.normal import BankGeometry, PassShape, pass_commands, stream_passes
from hpim_ir.sim.hbm.program import HbmOp, HbmProgram
from hpim_ir.sim.hbm.timing import (
    ACTIVATES,
    AUTO_PRE,
    BANK_COMMANDS,
    EVENTS,
    NEVER,
    SCOPES,
    Cmd,
    Level,
    Rules,
)

MERGEABLE = (HbmOp.MAC_AB, HbmOp.WR_GB, HbmOp.RD_OUT)
"""Raw instructions that form runs when consecutive (MACs: to the same row)."""

_MACROS = (HbmOp.GEMV, HbmOp.LOAD_GB, HbmOp.READOUT)
"""The PIM macros, carried out as runs (`FastController.macro_run`)."""

WITH_ROW = (
    HbmOp.MAC_AB, HbmOp.ACT_AB, HbmOp.GEMV, HbmOp.READ, HbmOp.WRITE,
    HbmOp.ACT, HbmOp.RD, HbmOp.WR, HbmOp.RDA, HbmOp.WRA,
)
"""Instructions whose `row` is a row; the others' is -1."""

_CLOSES_ITSELF = (Cmd.RDA, Cmd.WRA)

_SINGLE_BANK_EVENTS = (*sorted(BANK_COMMANDS), AUTO_PRE)
"""The events of single-bank commands: every per-bank, per-group, per-rank and
per-pseudo-channel entry of a `FastDevice` is at most the channel-wide entry of its kind."""


class _Layout:
    """Where each entry of a `FastDevice`'s flat list lives, and what each command reads and
    writes there. Slots 0..EVENTS-1: the last event of each kind anywhere on the channel;
    then per level of `SCOPES` and unit, one slot per event kind that a rule at that level
    relates; then four per rank (its last four ACTs, oldest first)."""

    def __init__(self, rules: Rules, geometry: BankGeometry) -> None:
        g = geometry
        per_unit = {
            Level.BANK: 1,
            Level.GROUP: g.banks_per_group,
            Level.RANK: g.banks_per_group * g.bank_groups,
            Level.PSEUDO_CHANNEL: g.banks_per_group * g.bank_groups * g.ranks,
        }
        size = EVENTS
        slot: dict[tuple[Level, int, int], int] = {}
        self.kinds: dict[Level, list[int]] = {}
        for level in SCOPES:
            table = rules.scope_gap[level]
            self.kinds[level] = [
                p for p in range(EVENTS) if any(gap > NEVER for gap in table[p])
            ]
            for unit in range(g.banks // per_unit[level]):
                for p in self.kinds[level]:
                    slot[level, unit, p] = size
                    size += 1
        ranks = g.banks // per_unit[Level.RANK]
        self.windows = [size + 4 * r for r in range(ranks)]
        self.size = size + 4 * ranks

        def units(bank: int) -> list[tuple[Level, int]]:
            return [(level, bank // per_unit[level]) for level in SCOPES]

        self.all_bank_slots = [
            k for k in range(EVENTS) if k not in _SINGLE_BANK_EVENTS
        ] + list(range(self.windows[0], self.size))
        """The entries all-bank commands read and write: the channel-wide ones of every
        kind but the single-bank ones, and the four-activate windows."""
        self.rank_of = [bank // per_unit[Level.RANK] for bank in range(g.banks)]
        self.act_slot = [slot[Level.BANK, b, Cmd.ACT] for b in range(g.banks)]
        self.closed_slot = [slot.get((Level.BANK, b, AUTO_PRE)) for b in range(g.banks)]
        self.terms: dict[tuple[Cmd, int], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.writes: dict[tuple[Cmd, int], tuple[int, ...]] = {}
        for c in Cmd:
            channel_terms = [(p, rules.gap[p][c]) for p in range(EVENTS) if rules.gap[p][c] > NEVER]
            if c not in BANK_COMMANDS:
                terms = channel_terms
                if c in ACTIVATES:
                    terms += [(window, rules.faw) for window in self.windows]
                self.terms[c, -1] = tuple(zip(*terms))
                continue
            for b in range(g.banks):
                terms = list(channel_terms)
                writes = [c]
                for level, unit in units(b):
                    gaps = rules.scope_gap[level]
                    terms += [
                        (slot[level, unit, p], gaps[p][c])
                        for p in self.kinds[level]
                        if gaps[p][c] > NEVER
                    ]
                    if c in self.kinds[level]:
                        writes.append(slot[level, unit, c])
                if c in ACTIVATES:
                    terms.append((self.windows[self.rank_of[b]], rules.faw))
                self.terms[c, b] = tuple(zip(*terms))
                self.writes[c, b] = tuple(writes)


class FastDevice:
    """The timing state of one channel as one flat list (`_Layout`), and its open rows."""

    __slots__ = ("times", "open", "geometry", "_uniform", "_layout", "_rules")

    def __init__(self, rules: Rules, geometry: BankGeometry, layout: _Layout) -> None:
        self.times = [NEVER] * layout.size
        self.open = [-1] * geometry.banks
        """The open row of each bank, -1 if closed."""
        self.geometry = geometry
        self._uniform: int | None = -1
        """The row open in every bank, -1 if all are closed, -2 if they differ; None when not
        known (a single-bank row command since the last all-bank one)."""
        self._layout = layout
        self._rules = rules

    def earliest(self, cmd: Cmd, row: int, bank: int) -> int:
        slots, gaps = self._layout.terms[cmd, bank]
        return max(map(add, map(self.times.__getitem__, slots), gaps))

    def all_open(self, row: int) -> bool:
        return self._row_everywhere() == row

    def any_open(self) -> bool:
        return self._row_everywhere() != -1

    def commit(self, cmd: Cmd, cycle: int, row: int, bank: int) -> None:
        times, layout = self.times, self._layout
        if bank < 0:
            times[cmd] = cycle
            if cmd == Cmd.ACT_AB:
                self.open = [row] * len(self.open)
                self._uniform = row
                for window in layout.windows:
                    times[window : window + 3] = times[window + 1 : window + 4]
                    times[window + 3] = cycle
            elif cmd == Cmd.PRE_AB:
                self.open = [-1] * len(self.open)
                self._uniform = -1
            return
        for slot in layout.writes[cmd, bank]:
            times[slot] = cycle
        if cmd == Cmd.ACT:
            self.open[bank] = row
            self._uniform = None
            window = layout.windows[layout.rank_of[bank]]
            times[window : window + 3] = times[window + 1 : window + 4]
            times[window + 3] = cycle
        elif cmd == Cmd.PRE:
            self.open[bank] = -1
            self._uniform = None
        elif cmd in _CLOSES_ITSELF:
            self.open[bank] = -1
            self._uniform = None
            activated = max(times[layout.act_slot[bank]], times[Cmd.ACT_AB])
            closed = max(cycle + self._rules.auto_precharge[cmd], activated + self._rules.ras)
            times[AUTO_PRE] = max(times[AUTO_PRE], closed)
            times[layout.closed_slot[bank]] = closed

    def set_rows(self, rows: list[int]) -> None:
        """Put the banks' open rows (-1: closed) back, as a state restore does."""
        self.open = rows
        self._uniform = None

    def _row_everywhere(self) -> int:
        if self._uniform is None:
            first = self.open[0]
            self._uniform = first if self.open.count(first) == len(self.open) else -2
        return self._uniform


class _PassResult:
    """What one simulated pass did, relative to its start cycle and row."""

    __slots__ = (
        "exit", "last", "first", "finish", "counts", "by_controller", "pieces", "log", "times",
        "owner",
    )

    def __init__(
        self, exit_state, last, first, finish, counts, by_controller, pieces, log, owner
    ) -> None:
        self.exit = exit_state
        self.last = last
        """Issue cycle of its last command, relative."""
        self.first = first
        """Issue cycle of its first command, relative (None: it issued none)."""
        self.finish = finish
        """The latest completion of its commands, relative."""
        self.counts = counts
        self.by_controller = by_controller
        self.pieces = pieces
        """(cycles, commands, rows (-1: none), columns, banks) as arrays, relative."""
        self.log = log
        """Its commands in issue order: (cycle, command, row (-1: none), column, bank,
        by_controller), cycle and row relative."""
        self.times = [entry[0] for entry in log]
        self.owner = owner
        """Per command of `log`: the index of the pass's instruction it was issued for."""


class _Resumed:
    """A pass resumed after a refresh (`FastController._resume`) that does not depend on
    when the refresh fell due, within limits (`fits`)."""

    __slots__ = ("result", "settled", "reopened")

    def __init__(self, result: _PassResult, settled: int, reopened: int | None) -> None:
        self.result = result
        self.settled = settled
        """The earliest cycle of the refresh's precharge (or refresh), relative: a due cycle
        up to it changes nothing."""
        self.reopened = reopened
        """Issue cycle of the last row reopened after the refresh, relative (None: none)."""

    def fits(self, start: int, due: int, interval: int, turn: int) -> bool:
        """Whether the pass from `start`, with a refresh due at `due`, is this one."""
        following = due + interval
        return (
            due <= start + self.settled
            and start + self.result.last < following
            and (self.reopened is None or start + self.reopened + turn < following)
        )


class _PassMemo:
    """The passes of `read` / `write` macros simulated so far, shared by the channels of one
    simulation: by key (the pass's shape and the channel's state relative to the pass's start
    and row), and which known pass was found to follow which (a known pass, the next pass's
    shape and its row relative to the known one's -> the next pass's result); passes with a
    refresh inside: resumed ones (`_Resumed`), and the others by key and the due cycle
    relative to their start (the same state and the same refresh schedule: the same pass).
    Likewise the runs of PIM macros (`FastController.macro_run`) by their all-bank key."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, _PassResult] = {}
        self.following: dict[tuple, _PassResult] = {}
        self.runs: dict[tuple, _RunResult] = {}
        self.resumed: dict[tuple, _Resumed] = {}
        self.phased: dict[tuple, _PassResult] = {}
        self.after: dict[tuple, _RunResult] = {}


class _RunResult:
    """What one run of a PIM macro did (`FastController.macro_run`), or a GEMV's runs one
    after the other (`FastController.gemv`), relative to its start cycle and row."""

    __slots__ = (
        "last", "first", "finish", "writes", "opened", "counts", "by_controller", "pieces",
        "tail",
    )

    def __init__(
        self, last, first, finish, writes, opened, counts, by_controller, pieces, tail=None
    ) -> None:
        self.last = last
        """Issue cycle of its last command."""
        self.first = first
        """Issue cycle of its first command."""
        self.finish = finish
        """The latest completion of its commands."""
        self.writes = writes
        """(slot, cycle) of every all-bank slot of the device it changed."""
        self.opened = opened
        """The row it left open in every bank, relative (None: it opened none)."""
        self.counts = counts
        self.by_controller = by_controller
        self.pieces = pieces
        """Its trace pieces, cycles and rows relative."""
        self.tail = self if tail is None else tail
        """The run it ends with: the next run is found from it (`FastController.after`)."""

    @staticmethod
    def chain(runs: list[tuple["_RunResult", int]]) -> "_RunResult":
        """Runs done one after the other, each (run, its start relative to the first's),
        the i-th at row i (a GEMV's rows), as one."""
        writes: dict[int, int] = {}
        opened = None
        for row, (run, start) in enumerate(runs):
            writes.update((slot, start + t) for slot, t in run.writes)
            if run.opened is not None:
                opened = row + run.opened
        last_run, last_start = runs[-1]
        pieces = None
        if runs[0][0].pieces is not None:
            pieces = [
                piece
                for row, (run, start) in enumerate(runs)
                for piece in _shift_pieces(run.pieces, start, row)
            ]
        return _RunResult(
            last_start + last_run.last,
            runs[0][0].first,
            max(start + run.finish for run, start in runs),
            list(writes.items()),
            opened,
            [sum(counts) for counts in zip(*(run.counts for run, _ in runs))],
            [sum(counts) for counts in zip(*(run.by_controller for run, _ in runs))],
            pieces,
            last_run,
        )


class FastController(ChannelController):
    """A channel controller that issues runs of identical column commands in closed form and
    replays passes of normal-mode macros and runs of PIM macros it has seen."""

    replay_runs = True
    """Whether runs of PIM macros are replayed (`macro_run`); the tests turn it off to
    compare."""
    after: "_RunResult | None" = None
    """The known run the channel has just done (`macro_run`), None after anything else."""

    def column_run(
        self,
        cmd: Cmd,
        row: int,
        count: int,
        cols: np.ndarray | None,
        spans: tuple[list, list] | None = None,
    ) -> None:
        """Issue `count` instructions `cmd` (to `row` for MACs); `cols` are their columns /
        slots when tracing. With `spans`, each command is a program instruction of its own
        (a run of raw commands): its interval (`span`) goes onto the two lists (starts,
        ends)."""
        step = self.rules.gap[cmd][cmd]
        completion = self.rules.completion[cmd]
        issued = 0
        while issued < count:
            if spans is not None:
                self.begin_item()
            first = self.instruction(cmd, row, int(cols[issued]) if cols is not None else -1)
            if spans is not None:
                begin, end = self.span()
                spans[0].append(begin)
                spans[1].append(end)
            issued += 1
            # The rest of the run follows `step` apart until a refresh falls due.
            more = min(count - issued, (self.next_refresh - 1 - first) // step)
            if more > 0:
                last = first + more * step
                self.device.times[cmd] = last
                self.t_last = last
                self.done = max(self.done, last + completion)
                self.finish = max(self.finish, last + completion)
                self.counts[cmd] += more
                if spans is not None:
                    issues = range(first + step, last + 1, step)
                    spans[0].extend(issues)
                    spans[1].extend(range(issues.start + completion, last + completion + 1, step))
                if self.pieces is not None:
                    self.pieces.append(
                        (first + step, step, more, int(cmd), row, cols[issued : issued + more], -1)
                    )
                issued += more

    def macro_run(
        self, cmd: Cmd, row: int, count: int, cols: np.ndarray | None, memo: "_PassMemo"
    ) -> None:
        """`column_run` for one run of a PIM macro (a `gemv` row, a `load_gb`, a `readout`),
        replayed from `memo` when the channel is in an all-bank state seen before.

        An all-bank state: no single-bank event within `Rules.horizon` of the run's start
        (the cycle no command may precede: the last issue or the floor) and every bank at
        the same row (or closed). Then the run's timing depends only on the all-bank slots
        of the device (the last event of each all-bank kind and the four-activate windows)
        relative to the start, and on whether its row is open, closed or another is open:
        the key. A run found under its key is replayed, shifted, if it ends before the next
        refresh falls due; a run simulated is stored if no refresh fell due during it.

        Right after a known run (`after`), when no command may issue before the last one,
        the next run's key is a function of that run and the next one's kind, length and
        row relation: the run found under it is looked up from those (`_PassMemo.after`)."""
        start = self.t_last if self.t_last > self.floor else self.floor
        device = self.device
        times = device.times
        uniform = device._row_everywhere()
        relation = 0 if cmd != Cmd.MAC_AB or uniform == row else (1 if uniform >= 0 else -1)
        link = None
        if self.after is not None and self.t_last >= self.floor:
            link = (self.after, cmd, count, relation)
            known = memo.after.get(link)
        if link is None or known is None:
            low = start - self.rules.horizon
            self.after = None
            if (
                not self.replay_runs
                or uniform == -2
                or any(times[k] > low for k in _SINGLE_BANK_EVENTS)
            ):
                self.column_run(cmd, row, count, cols)
                return
            slots = device._layout.all_bank_slots
            entry = [times[k] for k in slots]
            floor = -self.rules.horizon
            key = (cmd, count, relation, tuple([t - start if t > low else floor for t in entry]))
            known = memo.runs.get(key)
            if known is not None and link is not None:
                memo.after[link] = known
        if known is not None and start + known.last < self.next_refresh:
            self._apply_run(known, start, row)
            return
        self.after = None
        if known is not None:  # found, but a refresh falls due: simulate it
            self.column_run(cmd, row, count, cols)
            return
        refresh = self.next_refresh
        before = self._begin_record()
        self.column_run(cmd, row, count, cols)
        own_first, own_finish, counts, by_controller, traced = self._end_record(before)
        if self.next_refresh != refresh:
            return
        known = memo.runs[key] = _RunResult(
            self.t_last - start,
            own_first - start,
            own_finish - start,
            [(k, times[k] - start) for k, t in zip(slots, entry) if times[k] != t],
            0 if relation != 0 else None,
            counts,
            by_controller,
            None if self.pieces is None else _shift_pieces(self.pieces[traced:], -start, -row),
        )
        if link is not None:
            memo.after[link] = known
        self.after = known

    def _apply_run(self, known: _RunResult, start: int, row: int) -> None:
        """Replay run `known` from cycle `start` at row `row`."""
        device = self.device
        times = device.times
        self.after = known.tail
        for slot, t in known.writes:
            times[slot] = start + t
        if known.opened is not None:
            device.open = [row + known.opened] * len(device.open)
            device._uniform = row + known.opened
        self.t_last = start + known.last
        if self.first is None:
            self.first = start + known.first
        finish = start + known.finish
        self.finish = max(self.finish, finish)
        self.done = max(self.done, finish)
        self.counts = list(map(add, self.counts, known.counts))
        self.by_controller = list(map(add, self.by_controller, known.by_controller))
        if self.pieces is not None:
            self.pieces += _shift_pieces(known.pieces, start, row)

    def gemv(self, row: int, rows: int, cols: int, trace: bool, memo: "_PassMemo") -> None:
        """`hbm.gemv row=row rows=rows cols=cols`: one `macro_run` per row, or, right after
        a known run (`after`), the GEMV's runs as one when it was seen after that run
        before, all of them known (`_RunResult.chain`)."""
        columns = np.arange(cols) if trace else None
        link = None
        if rows > 1 and self.after is not None and self.t_last >= self.floor:
            uniform = self.device._row_everywhere()
            link = (self.after, "gemv", rows, cols, uniform == row, uniform == -1)
            whole = memo.after.get(link)
            if whole is not None and self.t_last + whole.last < self.next_refresh:
                self._apply_run(whole, self.t_last, row)
                return
        runs = []
        for r in range(row, row + rows):
            start = self.t_last
            self.macro_run(Cmd.MAC_AB, r, cols, columns, memo)
            runs.append((self.after, start))
        if link is not None and all(run is not None for run, _ in runs):
            first = runs[0][1]
            memo.after[link] = _RunResult.chain([(run, start - first) for run, start in runs])

    def stream(self, write: bool, row: int, rows: int, cols: int, memo: "_PassMemo") -> None:
        """Carry out `hbm.read` (`write`: `hbm.write`) pass by pass; `memo` holds the passes
        simulated so far (shared by the channels of one simulation).

        Replays are lazy: a replayed pass leaves the device's times and rows to be written
        back (`_settle`) only when something needs them. The pass after a replayed one is
        found from it directly (`_PassMemo.following`) when the same pass was seen to follow
        it before: its key is a function of the replayed pass's exit state alone."""
        geometry = self.device.geometry
        pending: tuple[_PassResult, int, int] | None = None  # replayed, not yet settled
        for first, shape in stream_passes(geometry, write, row, rows, cols):
            start = self.t_last
            known = None
            if pending is not None:
                known = memo.following.get((pending[0], shape, first - pending[2]))
            if known is None:
                if pending is not None:
                    self._settle(*pending)
                key = (shape, self._relative(start, first))
                known = memo.by_key.get(key)
                if known is not None and pending is not None:
                    memo.following[pending[0], shape, first - pending[2]] = known
                pending = None
            if known is not None and start + known.last < self.next_refresh:
                self._replay(known, start, first)
                pending = (known, start, first)
                continue
            if pending is not None:
                self._settle(*pending)
                pending = None
            if known is not None:
                resumed = self._resume(known, shape, start, first, memo)
                if resumed is not None:
                    pending = (resumed, start, first)
                continue
            # A pass not seen without a refresh: seen with the refresh due at the same point?
            due = self.next_refresh
            phased = memo.phased.get((key, due - start))
            if phased is not None:
                self._replay(phased, start, first)
                self.next_refresh = due + self.rules.refresh_interval
                pending = (phased, start, first)
                continue
            result = self._simulate_pass(first, shape, start)
            if self.next_refresh == due:
                memo.by_key[key] = result
            elif self.next_refresh == due + self.rules.refresh_interval:
                memo.phased[key, due - start] = result
        if pending is not None:
            self._settle(*pending)

    def _simulate_pass(self, row: int, shape: PassShape, start: int) -> _PassResult:
        """Run one pass command by command; its result."""
        before = self._begin_record()
        self.log, owner = [], []
        for index, (cmd, bank, offset, col) in enumerate(pass_commands(self.device.geometry, shape)):
            self.instruction(cmd, row + offset, col, bank)
            owner += [index] * (len(self.log) - len(owner))
        log, self.log = self.log, None
        return self._close_pass(before, start, row, log, owner)

    def _begin_record(self) -> tuple:
        """Start recording what the next commands do (a run, a pass): what `_end_record`
        needs to tell their part from the instruction's and the channel's."""
        before = (
            self.counts[:],
            self.by_controller[:],
            len(self.pieces) if self.pieces is not None else 0,
            self.first,
            self.finish,
        )
        self.first, self.finish = None, -1
        return before

    def _end_record(self, before: tuple) -> tuple:
        """The commands since `_begin_record`: their first issue cycle (None: none), their
        latest completion, the commands they added per kind (all, by the controller), and
        where their trace pieces start. The instruction's first and finish include them."""
        counts, by_controller, traced, first, finish = before
        own_first, own_finish = self.first, self.finish
        self.first = first if first is not None else own_first
        self.finish = max(finish, own_finish)
        return (
            own_first,
            own_finish,
            [a - b for a, b in zip(self.counts, counts)],
            [a - b for a, b in zip(self.by_controller, by_controller)],
            traced,
        )

    def _close_pass(
        self, before: tuple, start: int, row: int, log: list, owner: list
    ) -> _PassResult:
        """What the commands since `_begin_record` did, as a pass from cycle `start` at
        `row` (`log`: its commands; `owner`: their instructions)."""
        own_first, own_finish, counts, by_controller, traced = self._end_record(before)
        pieces = None
        if self.pieces is not None:
            # Each piece is `count` commands at one cycle each (step 0), fields scalar or not.
            t, cmd, rows, col, bank = (
                np.concatenate([np.broadcast_to(p[f], p[2]) for p in self.pieces[traced:]])
                for f in (0, 3, 4, 5, 6)
            )
            pieces = (t - start, cmd, _move_rows(cmd, rows, -row), col, bank)
        return _PassResult(
            self._relative(start, row),
            self.t_last - start,
            own_first - start if own_first is not None else None,
            own_finish - start,
            counts,
            by_controller,
            pieces,
            [
                (t - start, cmd, r - row if cmd in ROW_COMMANDS else -1, col, bank, by)
                for t, cmd, r, col, bank, by in log
            ],
            owner,
        )

    def _resume(
        self, known: _PassResult, shape: PassShape, start: int, row: int, memo: "_PassMemo"
    ) -> _PassResult | None:
        """A pass seen before in the same relative state, but a refresh falls due before it
        ends: its commands issued before the due cycle are issued as they were then (the
        controller decides the same until a refresh intervenes), the rest one by one.

        Where the refresh's precharge (or, banks closed, the refresh) could not have issued
        before the due cycle anyway, the whole pass does not depend on the due cycle as long
        as it interrupts the same command, nothing in the pass reaches the next refresh and
        the rows reopened after the refresh stay clear of it: such a pass is stored under
        (`known`, the interrupted command) and replayed where it fits (`_Resumed`); the
        replayed pass is returned (to be settled), else None."""
        due = self.next_refresh
        interval = self.rules.refresh_interval
        done = bisect.bisect_left(known.times, due - start)
        resumed = memo.resumed.get((known, done))
        if resumed is not None and resumed.fits(start, due, interval, self.rules.refresh_turn):
            self._replay(resumed.result, start, row)
            self.next_refresh = due + interval
            return resumed.result
        before = self._begin_record()
        if done:
            # What `_issue` does for each, with the bookkeeping done once for all.
            commit, completion = self.device.commit, self.rules.completion
            counts, by_controller = self.counts, self.by_controller
            finish = self.finish
            for t, cmd, r, _, bank, by in known.log[:done]:
                t += start
                commit(cmd, t, row + r if cmd in ROW_COMMANDS else -1, bank)
                counts[cmd] += 1
                if by:
                    by_controller[cmd] += 1
                if t + completion[cmd] > finish:
                    finish = t + completion[cmd]
            self.t_last = t
            self.finish = finish
            self.done = max(self.done, finish)
            self.first = start + known.log[0][0]
            if self.pieces is not None:
                t, cmd, rows_, col, bank = (field[:done] for field in known.pieces)
                self.pieces.append((t + start, 0, done, cmd, _move_rows(cmd, rows_, row), col, bank))
        device = self.device
        closing = Cmd.PRE_AB if device.any_open() else Cmd.REF_AB
        settled = max(device.earliest(closing, -1, -1), self.t_last) - start
        commands = pass_commands(device.geometry, shape)
        for cmd, bank, offset, col in commands[known.owner[done] :]:
            self.instruction(cmd, row + offset, col, bank)
        result = self._close_pass(before, start, row, [], [])
        if start + settled >= due and self.next_refresh == due + interval and not self.reopen_cut:
            reopened = None if self.reopen_last is None else self.reopen_last - start
            memo.resumed[known, done] = _Resumed(result, settled, reopened)
        return None

    def _relative(self, start: int, row: int) -> tuple:
        """The state relative to cycle `start` and row `row`: what a pass's timing depends on."""
        floor = -self.rules.horizon
        device = self.device
        return (
            max(self.floor - start, 0),
            self.done - start,
            tuple([t - start if t - start > floor else floor for t in device.times]),
            tuple([r - row if r >= 0 else None for r in device.open]),
        )

    def _replay(self, known: _PassResult, start: int, row: int) -> None:
        """Pass `known` again from cycle `start` at row `row`: everything but the device's
        times and rows, which `_settle` writes."""
        floor, done, _, _ = known.exit
        self.floor = start + floor
        self.done = start + done
        self.t_last = start + known.last
        self.counts = list(map(add, self.counts, known.counts))
        self.by_controller = list(map(add, self.by_controller, known.by_controller))
        if known.first is not None:
            if self.first is None:
                self.first = start + known.first
            self.finish = max(self.finish, start + known.finish)
        if self.pieces is not None:
            t, cmd, rows_, col, bank = known.pieces
            rows_ = _move_rows(cmd, rows_, row)
            self.pieces.append((t + start, 0, len(t), cmd, rows_, col, bank))

    def _settle(self, known: _PassResult, start: int, row: int) -> None:
        """The device's times and rows after pass `known` replayed from `start` at `row`."""
        _, _, times, rows = known.exit
        self.device.times = [start + t for t in times]
        self.device.set_rows([row + r if r is not None else -1 for r in rows])

    saved: tuple | None = None
    """The device's times and rows of the last `restore`, until `wake` writes them back."""

    def state(self) -> tuple:
        """Everything the rest of a simulation depends on (counts and trace aside)."""
        device = self.device
        times, rows = self.saved or (tuple(device.times), tuple(device.open))
        return (self.t_last, self.floor, self.done, self.next_refresh, times, rows)

    def restore(self, state: tuple) -> None:
        """Put the controller back into a `state()`; the device's part is written back only
        when the device is next used (`wake`): most channels are restored again first."""
        self.t_last, self.floor, self.done, self.next_refresh, times, rows = state
        self.saved = (times, rows)

    def wake(self) -> None:
        """Write back the device state of the last `restore` (before issuing commands)."""
        if self.saved is not None:
            times, rows = self.saved
            self.device.times = list(times)
            self.device.set_rows(list(rows))
            self.saved = None


class _ChannelStreams:
    """The program split with numpy into per-(segment, channel) instruction lists and runs.

    Items are the instructions as each channel sees them (a record over channels A:B is an
    item of each), sorted by segment, channel and program order. A group is one channel's
    items in one segment; a run is a maximal stretch of one group's items that
    `FastController.column_run` issues at once (a macro is a run of its own)."""

    def __init__(self, records: np.ndarray, channels: int) -> None:
        op = records["op"].astype(np.int64)
        lo = records["ch_lo"].astype(np.int64)
        hi = records["ch_hi"].astype(np.int64)
        hi = np.where(hi < 0, channels, hi)
        self.sync = np.flatnonzero(
            (op == HbmOp.SIGNAL) | (op == HbmOp.WAIT) | ((op == HbmOp.BARRIER) & (hi - lo > 1))
        )
        segment = np.zeros(len(records), dtype=np.int64)
        segment[self.sync] = 1
        segment = np.cumsum(segment)
        local = np.ones(len(records), dtype=bool)
        local[self.sync] = False
        index = np.flatnonzero(local)
        width = (hi - lo)[index]
        record = np.repeat(index, width)
        channel = lo[record] + np.arange(len(record)) - np.repeat(np.cumsum(width) - width, width)
        # By segment, then channel, then record: items come in record order, so a stable
        # sort on one (segment, channel) key keeps the records in order (and is much faster
        # than a lexsort of three keys).
        key = segment[record] * (channels + 1) + channel
        order = np.argsort(key, kind="stable")
        self.by_record = (order, record, channel)
        """Items in record order (then channel): `order` takes them to the item order."""
        key, record = key[order], record[order]
        fields = np.stack(
            [op, *(records[f].astype(np.int64) for f in ("row", "col", "n", "bank"))], axis=1
        )
        self.items = fields[record]
        """Per item, what the timing and the trace depend on (not the channel): op, row,
        col, n, bank."""
        self.op, self.row, self.col = self.items[:, 0], self.items[:, 1], self.items[:, 2]
        count = len(record)
        group_starts = np.ones(count, dtype=bool)
        group_starts[1:] = key[1:] != key[:-1]
        run_starts = group_starts.copy()
        run_starts[1:] |= (
            (self.op[1:] != self.op[:-1])
            | (self.row[1:] != self.row[:-1])
            | ~np.isin(op, MERGEABLE)[record[1:]]
        )
        self.group_start = np.flatnonzero(group_starts)
        self.group_end = np.append(self.group_start[1:], count)
        self.run_start = np.flatnonzero(run_starts)
        self.run_length = np.diff(np.append(self.run_start, count))
        self.group_runs = np.searchsorted(self.run_start, self.group_start)
        self.group_runs_end = np.append(self.group_runs[1:], len(self.run_start))
        self.segment_groups = np.searchsorted(
            key[self.group_start] // (channels + 1), np.arange(len(self.sync) + 2)
        ).tolist()
        """Segment s's groups are `segment_groups[s]` to `segment_groups[s + 1]`."""
        self.bounds = (
            self.group_start.tolist(),
            self.group_end.tolist(),
            (key[self.group_start] % (channels + 1)).tolist(),
        )
        """Per group, as lists: its first item, the item after its last, its channel."""
        # Rows relative to the group's first row (its offset): a layer's group is then the
        # same as another layer's. Groups whose row-less items carry a row are left out.
        self.has_row = np.isin(op, WITH_ROW)[record]
        first_row = np.minimum.reduceat(
            np.where(self.has_row, np.arange(count), count), self.group_start
        ) if count else np.zeros(0, np.int64)
        offset = np.where(first_row < self.group_end, self.row[np.minimum(first_row, count - 1)], 0)
        stray = np.add.reduceat(~self.has_row & (self.row != -1), self.group_start) if count else offset
        self.group_offset = offset.tolist()
        self.group_shifts = (stray == 0).tolist()
        """Per group: the row its rows are counted from; whether it may be shifted."""

    def relative_items(self, group: int) -> bytes:
        """The group's items with rows counted from its offset."""
        start, end = self.bounds[0][group], self.bounds[1][group]
        items = self.items[start:end].copy()
        items[:, 1] -= np.where(self.has_row[start:end], self.group_offset[group], 0)
        return items.tobytes()

    def groups_of_segment(self, segment: int) -> range:
        return range(self.segment_groups[segment], self.segment_groups[segment + 1])


@cache
def _tables(hbm) -> tuple[Rules, BankGeometry, _Layout]:
    """The rule tables and the flat layout of a machine's channels, built once per machine."""
    rules, geometry = Rules.from_hbm(hbm), BankGeometry.of(hbm)
    return rules, geometry, _Layout(rules, geometry)


def _relative_entry(state: tuple, offset: int, floor: int) -> tuple[int, tuple]:
    """A channel's `state()` relative to its start and to row `offset`: the start (no
    command issues before it), and what a group's timing depends on besides the refresh
    schedule: every time minus the start (times older than every rule's reach all alike),
    open rows minus `offset`."""
    t_last, barrier, done, _, times, rows = state
    base = max(t_last, barrier)
    return base, (
        max(done - base, 0),
        tuple([t - base if t - base > floor else floor for t in times]),
        tuple([r - offset if r >= 0 else None for r in rows]),
    )


class _ShiftedGroup:
    """A group's result relative to its start and its first row (`_relative_entry`), to be
    applied at another start and row (`at`). Valid where no refresh falls due before its
    last command: the controller decides as it did until a refresh intervenes."""

    __slots__ = (
        "issued", "last", "floor", "done", "times", "rows", "counts", "by_controller",
        "pieces", "starts", "ends",
    )

    def __init__(self, entry: tuple, result: tuple, base: int, offset: int) -> None:
        (t_last, floor, done, _, times, rows), counts, by_controller, pieces, starts, ends = result
        self.issued = any(counts)
        """Whether it issued any command (else the channel's t_last and done stay)."""
        self.last = t_last - base
        """Issue cycle of its last command."""
        self.floor = floor - base if floor != entry[1] else None
        """The floor a barrier raised, None if it stayed."""
        self.done = done - base
        self.times = [t - base for t in times]
        self.rows = [r - offset if r >= 0 else None for r in rows]
        self.counts, self.by_controller = counts, by_controller
        self.pieces = None if pieces is None else _shift_pieces(pieces, -base, -offset)
        self.starts, self.ends = starts - base, ends - base

    def at(self, entry: tuple, base: int, offset: int) -> tuple:
        """The group's result (as `_simulate_group` gives it) from channel state `entry`,
        whose start is `base`, at row `offset`."""
        t_last, floor, done, next_refresh, _, _ = entry
        if self.issued:
            t_last, done = base + self.last, base + self.done
        if self.floor is not None:
            floor = base + self.floor
        state = (
            t_last,
            floor,
            done,
            next_refresh,
            tuple([base + t for t in self.times]),
            tuple([offset + r if r is not None else -1 for r in self.rows]),
        )
        pieces = None if self.pieces is None else _shift_pieces(self.pieces, base, offset)
        return (
            state, self.counts, self.by_controller, pieces, self.starts + base, self.ends + base
        )


_ROW_CODES = np.array(sorted(ROW_COMMANDS))


def _move_rows(cmd: np.ndarray, rows: np.ndarray, by: int) -> np.ndarray:
    """The rows of commands `cmd` in a trace moved by `by`, where the command has a row
    (`ROW_COMMANDS`; the others' is -1). A relative row may be negative: the command, not
    the sign, says whether there is one."""
    return np.where(np.isin(cmd, _ROW_CODES), rows + by, -1)


def _shift_pieces(pieces: list, cycles: int, rows: int) -> list:
    """Trace pieces (`controller.Piece`) moved by `cycles` and, where their command has a
    row, by `rows`."""
    shifted = []
    for t, step, count, cmd, row, col, bank in pieces:
        if isinstance(cmd, np.ndarray):
            row = _move_rows(cmd, row, rows)
        elif cmd in ROW_COMMANDS:
            row = row + rows
        shifted.append((t + cycles, step, count, cmd, row, col, bank))
    return shifted


class FastSimulation(HbmSimulation):
    """An HBM-PIM program in flight on the fast engine: segment by segment (a segment ends
    at cross-channel synchronization), each channel's instructions of a segment at once,
    memoized (see the module docstring)."""

    engine = "fast"
    shift_groups = True
    """Whether groups are replayed from a known group in the same relative state
    (`_shifted_group`); the tests turn it off to compare."""

    def __init__(self, program: HbmProgram, hw, trace: bool = False,
                 tokens: dict[int, int] | None = None) -> None:
        super().__init__(program, hw, trace, tokens)
        hbm = hw.hbm
        rules, geometry, layout = _tables(hbm)
        self.streams = _ChannelStreams(program.records, hbm.total_channels)
        self.channels = [
            FastController(FastDevice(rules, geometry, layout), rules, trace)
            for _ in range(hbm.total_channels)
        ]
        self.trace_parts: list | None = [] if trace else None
        self.memo: dict[tuple, tuple] = {}
        """(a group's instructions, the channel's state on entry) -> what the group did."""
        self.quick: dict[tuple, tuple] = {}
        """(a group's instructions, the entry's `entered` object, floor) -> the same."""
        self.entered: list[tuple | None] = [None] * hbm.total_channels
        """Per channel: the exit state of its last group (None: the initial state). The
        memo keeps these alive, so their identities are stable."""
        self.passes = _PassMemo()
        self.rules = rules
        self.shifted: dict[tuple, _ShiftedGroup] = {}
        """(a group's instructions with rows relative to its first, the channel's state
        relative to the group's start and that row) -> what the group did, relative."""
        self.applied: list[tuple] = []
        """Per group done, in item order: the memoized result applied to its channel."""
        self.segment = 0
        """The segment in progress; its channels' instructions are done once `ran`."""
        self.ran = False

    def advance(self) -> bool:
        streams = self.streams
        while True:
            if not self.ran:
                self._run_segment(self.segment)
                self.ran = True
            if self.segment == len(streams.sync):
                self.finished = True
                return True
            if not self._sync(int(streams.sync[self.segment]), self.channels):
                return False
            self.segment += 1
            self.ran = False

    def _run_segment(self, segment: int) -> None:
        streams, memo, quick, entered = self.streams, self.memo, self.quick, self.entered
        group_start, group_end, group_channel = streams.bounds
        applied = self.applied
        for group in streams.groups_of_segment(segment):
            start, end = group_start[group], group_end[group]
            channel_index = group_channel[group]
            channel = self.channels[channel_index]
            items = streams.items[start:end].tobytes()
            # A channel's state is its last group's exit state with the floor raised since:
            # channels that share both are in the same state, without comparing states.
            entry = (items, id(entered[channel_index]), channel.floor)
            result = quick.get(entry)
            if result is None:
                state = channel.state()
                key = (items, state)
                result = memo.get(key)
                if result is None:
                    result = memo[key] = self._shifted_group(channel, group, state)
                quick[entry] = result
            channel.restore(result[0])
            entered[channel_index] = result[0]
            applied.append(result)
            if self.trace_parts is not None:
                self.trace_parts.append((channel_index, result[3]))

    def _shifted_group(self, channel: FastController, group: int, state: tuple) -> tuple:
        """What `group` does on `channel` from `state`: a known group's result shifted in time
        and rows when the channel is in the same relative state and no refresh falls due
        before its last command; else simulated (and kept, shifted back, if no refresh
        fell due during it)."""
        streams = self.streams
        if not (self.shift_groups and streams.group_shifts[group]):
            return _simulate_group(channel, streams, group, self.trace, self.passes)
        offset = streams.group_offset[group]
        base, relative = _relative_entry(state, offset, -self.rules.horizon)
        key = (streams.relative_items(group), relative)
        known = self.shifted.get(key)
        if known is not None and (not known.issued or base + known.last < state[3]):
            return known.at(state, base, offset)
        result = _simulate_group(channel, streams, group, self.trace, self.passes)
        if result[0][3] == state[3]:  # no refresh fell due
            self.shifted[key] = _ShiftedGroup(state, result, base, offset)
        return result

    def _collect(self) -> HbmResult:
        streams, applied = self.streams, self.applied
        # Counts are summed once per distinct group result, times the channels it served.
        served: dict[int, list] = {}
        for result in applied:
            entry = served.setdefault(id(result), [result, 0])
            entry[1] += 1
        counts, by_controller = [0] * len(Cmd), [0] * len(Cmd)
        for result, times in served.values():
            counts = [a + times * b for a, b in zip(counts, result[1])]
            by_controller = [a + times * b for a, b in zip(by_controller, result[2])]
        # Groups ran in item order (by segment, then channel), so their spans line up; the
        # timeline wants them in record order.
        order, record, channel = streams.by_record
        empty = np.zeros(0, dtype=np.int64)
        item_start, item_end = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
        item_start[order] = np.concatenate([empty] + [result[4] for result in applied])
        item_end[order] = np.concatenate([empty] + [result[5] for result in applied])
        return collect_result(
            self.hw,
            "fast",
            [channel.done for channel in self.channels],
            counts,
            by_controller,
            self.trace_parts,
            self.timeline(record, channel, item_start, item_end, in_order=True),
        )


def simulate_fast(
    program: HbmProgram, hw, trace: bool = False, tokens: dict[int, int] | None = None
) -> HbmResult:
    """Simulate a validated, bound, plain `program`; same results as `simulate_reference`."""
    return FastSimulation(program, hw, trace, tokens).run()


def _simulate_group(
    channel: FastController, streams: _ChannelStreams, group: int, trace: bool,
    passes: _PassMemo,
) -> tuple:
    """Run one channel's instructions of one segment; return its exit state, the counts it
    added, its trace pieces and each instruction's interval (`ChannelController.span`)."""
    channel.wake()
    channel.after = None
    counts, by_controller = channel.counts, channel.by_controller
    channel.counts, channel.by_controller = [0] * len(Cmd), [0] * len(Cmd)
    channel.pieces = [] if trace else None
    runs = range(int(streams.group_runs[group]), int(streams.group_runs_end[group]))
    starts = streams.run_start[runs.start : runs.stop].tolist()
    lengths = streams.run_length[runs.start : runs.stop].tolist()
    spans: tuple[list, list] = ([], [])
    for start, length in zip(starts, lengths):
        op, row, col, n, bank = streams.items[start].tolist()
        if op not in _MACROS:
            channel.after = None  # a run's successor is known only among PIM macros
        if op in MERGEABLE and length > 1:
            cols = streams.col[start : start + length] if trace else None
            channel.column_run(RAW_KINDS[op], row, length, cols, spans)
            continue
        channel.begin_item()
        if op in RAW_KINDS:
            channel.instruction(RAW_KINDS[op], row, col, bank)
        elif op == HbmOp.BARRIER:
            channel.wait_until(channel.done)
        elif op == HbmOp.GEMV:
            channel.gemv(row, n, col, trace, passes)
        elif op == HbmOp.LOAD_GB:
            channel.macro_run(Cmd.WR_GB, -1, col, np.arange(col) if trace else None, passes)
        elif op == HbmOp.READOUT:
            channel.macro_run(Cmd.RD_OUT, -1, n, np.full(n, -1) if trace else None, passes)
        else:  # READ, WRITE
            channel.stream(op == HbmOp.WRITE, row, n, col, passes)
        begin, end = channel.span()
        spans[0].append(begin)
        spans[1].append(end)
    result = (
        channel.state(),
        channel.counts,
        channel.by_controller,
        channel.pieces,
        np.array(spans[0], dtype=np.int64),
        np.array(spans[1], dtype=np.int64),
    )
    channel.counts, channel.by_controller = counts, by_controller
    return result
