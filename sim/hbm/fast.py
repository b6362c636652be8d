"""The fast HBM-PIM engine: the reference engine's results, without per-command work.

Four exact shortcuts, each proved against `reference.py` by the tests:

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
3. Memoized passes. A normal-mode macro (`read`, `write`) is a sequence of passes
   (`normal.py`). A pass's timing depends only on its shape and on the channel's state
   relative to the pass's start: times minus the start cycle (times older than every rule's
   reach, `Rules.horizon`, all alike) and open rows minus the pass's row. A pass simulated
   once is replayed from that key in any later pass that finds the same relative state and
   ends before the next refresh falls due; in a long read that is every pass but those
   around a refresh.
4. Memoized channels. The program is split into segments at cross-channel synchronization
   (barriers over several channels, signal, wait); within a segment channels are
   independent, and a channel's result depends only on its instructions and its state on
   entry. Channels with identical instructions (channel numbers aside) and identical entry
   state are simulated once; the others copy the result.

The program is split into per-channel instruction lists and runs with numpy; Python loops
only over runs, row changes, passes and refreshes.
"""

import bisect
from functools import cache
from operator import add

import numpy as np

from hpim_ir.sim.hbm.controller import RAW_KINDS, ChannelController
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

_CLOSES_ITSELF = (Cmd.RDA, Cmd.WRA)


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


class _PassMemo:
    """The passes of `read` / `write` macros simulated so far, shared by the channels of one
    simulation: by key (the pass's shape and the channel's state relative to the pass's start
    and row), and which known pass was found to follow which (a known pass, the next pass's
    shape and its row relative to the known one's -> the next pass's result)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, _PassResult] = {}
        self.following: dict[tuple, _PassResult] = {}


class FastController(ChannelController):
    """A channel controller that issues runs of identical column commands in closed form and
    replays passes of normal-mode macros it has seen."""

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
        ends; scalars or arrays)."""
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
                    issues = first + step * np.arange(1, more + 1, dtype=np.int64)
                    spans[0].append(issues)
                    spans[1].append(issues + completion)
                if self.pieces is not None:
                    self.pieces.append(
                        (first + step, step, more, int(cmd), row, cols[issued : issued + more], -1)
                    )
                issued += more

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
                self._resume(known, shape, start, first)
            else:
                result = self._simulate_pass(first, shape, start)
                if result is not None:
                    memo.by_key[key] = result
        if pending is not None:
            self._settle(*pending)

    def _simulate_pass(self, row: int, shape: PassShape, start: int) -> _PassResult | None:
        """Run one pass command by command; its result, unless a refresh came in between."""
        refresh = self.next_refresh
        counts, by_controller = self.counts[:], self.by_controller[:]
        traced = len(self.pieces) if self.pieces is not None else 0
        first, finish = self.first, self.finish
        self.first, self.finish = None, -1
        self.log, owner = [], []
        for index, (cmd, bank, offset, col) in enumerate(pass_commands(self.device.geometry, shape)):
            self.instruction(cmd, row + offset, col, bank)
            owner += [index] * (len(self.log) - len(owner))
        log, self.log = self.log, None
        own_first, own_finish = self.first, self.finish
        self.first = first if first is not None else own_first
        self.finish = max(finish, own_finish)
        if self.next_refresh != refresh:
            return None
        pieces = None
        if self.pieces is not None:
            t, _, _, cmd, rows, col, bank = (np.array(f) for f in zip(*self.pieces[traced:]))
            pieces = (t - start, cmd, np.where(rows >= 0, rows - row, -1), col, bank)
        return _PassResult(
            self._relative(start, row),
            self.t_last - start,
            own_first - start if own_first is not None else None,
            own_finish - start,
            [a - b for a, b in zip(self.counts, counts)],
            [a - b for a, b in zip(self.by_controller, by_controller)],
            pieces,
            [
                (t - start, cmd, r - row if r >= 0 else -1, col, bank, by)
                for t, cmd, r, col, bank, by in log
            ],
            owner,
        )

    def _resume(self, known: _PassResult, shape: PassShape, start: int, row: int) -> None:
        """A pass seen before in the same relative state, but a refresh falls due before it
        ends: its commands issued before the due cycle are issued as they were then (the
        controller decides the same until a refresh intervenes), the rest one by one."""
        done = bisect.bisect_left(known.times, self.next_refresh - start)
        for t, cmd, r, col, bank, by in known.log[:done]:
            self._issue(cmd, start + t, row + r if r >= 0 else -1, col, bank, by)
        commands = pass_commands(self.device.geometry, shape)
        for cmd, bank, offset, col in commands[known.owner[done] :]:
            self.instruction(cmd, row + offset, col, bank)

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
            rows_ = np.where(rows_ >= 0, rows_ + row, -1)
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
        order = np.argsort(segment[record] * (channels + 1) + channel, kind="stable")
        record = record[order]
        self.record = record
        """Per item: its record."""
        self.channel = channel[order]
        self.segment = segment[record]
        self.op = op[record]
        self.row = records["row"][record].astype(np.int64)
        self.col = records["col"][record].astype(np.int64)
        self.n = records["n"][record].astype(np.int64)
        self.bank = records["bank"][record].astype(np.int64)
        count = len(record)
        group_starts = np.ones(count, dtype=bool)
        group_starts[1:] = (self.segment[1:] != self.segment[:-1]) | (
            self.channel[1:] != self.channel[:-1]
        )
        run_starts = group_starts.copy()
        run_starts[1:] |= (
            (self.op[1:] != self.op[:-1])
            | (self.row[1:] != self.row[:-1])
            | ~np.isin(self.op[1:], MERGEABLE)
        )
        self.group_start = np.flatnonzero(group_starts)
        self.group_end = np.append(self.group_start[1:], count)
        self.run_start = np.flatnonzero(run_starts)
        self.run_length = np.diff(np.append(self.run_start, count))
        self.group_runs = np.searchsorted(self.run_start, self.group_start)
        self.group_runs_end = np.append(self.group_runs[1:], len(self.run_start))
        self.items = np.stack([self.op, self.row, self.col, self.n, self.bank], axis=1)
        """Per item, what the timing and the trace depend on (not the channel)."""

    def groups_of_segment(self, segment: int) -> range:
        first, last = np.searchsorted(self.segment[self.group_start], [segment, segment + 1])
        return range(int(first), int(last))


@cache
def _tables(hbm) -> tuple[Rules, BankGeometry, _Layout]:
    """The rule tables and the flat layout of a machine's channels, built once per machine."""
    rules, geometry = Rules.from_hbm(hbm), BankGeometry.of(hbm)
    return rules, geometry, _Layout(rules, geometry)


class FastSimulation(HbmSimulation):
    """An HBM-PIM program in flight on the fast engine: segment by segment (a segment ends
    at cross-channel synchronization), each channel's instructions of a segment at once,
    memoized (see the module docstring)."""

    engine = "fast"

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
        items = len(self.streams.record)
        self.item_start = np.zeros(items, dtype=np.int64)
        self.item_end = np.zeros(items, dtype=np.int64)
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
        streams, memo, quick = self.streams, self.memo, self.quick
        for group in streams.groups_of_segment(segment):
            start, end = int(streams.group_start[group]), int(streams.group_end[group])
            channel_index = int(streams.channel[start])
            channel = self.channels[channel_index]
            items = streams.items[start:end].tobytes()
            # A channel's state is its last group's exit state with the floor raised since:
            # channels that share both are in the same state, without comparing states.
            entry = (items, id(self.entered[channel_index]), channel.floor)
            result = quick.get(entry)
            if result is None:
                key = (items, channel.state())
                if key not in memo:
                    memo[key] = _simulate_group(channel, streams, group, self.trace, self.passes)
                result = quick[entry] = memo[key]
            exit_state, counts, by_controller, pieces, starts, ends = result
            channel.restore(exit_state)
            self.entered[channel_index] = exit_state
            channel.counts = list(map(add, channel.counts, counts))
            channel.by_controller = list(map(add, channel.by_controller, by_controller))
            self.item_start[start:end] = starts
            self.item_end[start:end] = ends
            if self.trace_parts is not None:
                self.trace_parts.append((channel_index, pieces))

    def _collect(self) -> HbmResult:
        channels = self.channels
        streams = self.streams
        return collect_result(
            self.hw,
            "fast",
            [channel.done for channel in channels],
            [sum(channel.counts[cmd] for channel in channels) for cmd in Cmd],
            [sum(channel.by_controller[cmd] for channel in channels) for cmd in Cmd],
            self.trace_parts,
            self.timeline(streams.record, streams.channel, self.item_start, self.item_end),
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
    counts, by_controller = channel.counts, channel.by_controller
    channel.counts, channel.by_controller = [0] * len(Cmd), [0] * len(Cmd)
    channel.pieces = [] if trace else None
    runs = range(int(streams.group_runs[group]), int(streams.group_runs_end[group]))
    starts = streams.run_start[runs.start : runs.stop].tolist()
    lengths = streams.run_length[runs.start : runs.stop].tolist()
    spans: tuple[list, list] = ([], [])
    for start, length in zip(starts, lengths):
        op, row, col, n, bank = streams.items[start].tolist()
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
            cols = np.arange(col) if trace else None
            for r in range(row, row + n):
                channel.column_run(Cmd.MAC_AB, r, col, cols)
        elif op == HbmOp.LOAD_GB:
            channel.column_run(Cmd.WR_GB, -1, col, np.arange(col) if trace else None)
        elif op == HbmOp.READOUT:
            channel.column_run(Cmd.RD_OUT, -1, n, np.full(n, -1) if trace else None)
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
        np.concatenate([np.atleast_1d(s) for s in spans[0]]) if spans[0] else np.zeros(0, np.int64),
        np.concatenate([np.atleast_1d(s) for s in spans[1]]) if spans[1] else np.zeros(0, np.int64),
    )
    channel.counts, channel.by_controller = counts, by_controller
    return result
