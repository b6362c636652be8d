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

from functools import cache
from operator import add

import numpy as np

from hpim_ir.sim.hbm.controller import RAW_KINDS, ChannelController
from hpim_ir.sim.hbm.engine import HbmResult, collect_result
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

    __slots__ = ("exit", "last", "counts", "by_controller", "pieces")

    def __init__(self, exit_state, last, counts, by_controller, pieces) -> None:
        self.exit = exit_state
        self.last = last
        """Issue cycle of its last command, relative."""
        self.counts = counts
        self.by_controller = by_controller
        self.pieces = pieces
        """(cycles, commands, rows (-1: none), columns, banks) as arrays, relative."""


class FastController(ChannelController):
    """A channel controller that issues runs of identical column commands in closed form and
    replays passes of normal-mode macros it has seen."""

    def column_run(self, cmd: Cmd, row: int, count: int, cols: np.ndarray | None) -> None:
        """Issue `count` instructions `cmd` (to `row` for MACs); `cols` are their columns /
        slots when tracing."""
        step = self.rules.gap[cmd][cmd]
        completion = self.rules.completion[cmd]
        issued = 0
        while issued < count:
            first = self.instruction(cmd, row, int(cols[issued]) if cols is not None else -1)
            issued += 1
            # The rest of the run follows `step` apart until a refresh falls due.
            more = min(count - issued, (self.next_refresh - 1 - first) // step)
            if more > 0:
                last = first + more * step
                self.device.times[cmd] = last
                self.t_last = last
                self.done = max(self.done, last + completion)
                self.counts[cmd] += more
                if self.pieces is not None:
                    self.pieces.append(
                        (first + step, step, more, int(cmd), row, cols[issued : issued + more], -1)
                    )
                issued += more

    def stream(self, write: bool, row: int, rows: int, cols: int, memo: dict) -> None:
        """Carry out `hbm.read` (`write`: `hbm.write`) pass by pass; `memo` holds the passes
        simulated so far (shared by the channels of one simulation)."""
        geometry = self.device.geometry
        for first, shape in stream_passes(geometry, write, row, rows, cols):
            start = self.t_last
            key = (shape, self._relative(start, first))
            known = memo.get(key)
            if known is not None and start + known.last < self.next_refresh:
                self._replay(known, start, first)
            else:
                result = self._simulate_pass(first, shape, start)
                if result is not None:
                    memo[key] = result

    def _simulate_pass(self, row: int, shape: PassShape, start: int) -> _PassResult | None:
        """Run one pass command by command; its result, unless a refresh came in between."""
        refresh = self.next_refresh
        counts, by_controller = self.counts[:], self.by_controller[:]
        traced = len(self.pieces) if self.pieces is not None else 0
        for cmd, bank, offset, col in pass_commands(self.device.geometry, shape):
            self.instruction(cmd, row + offset, col, bank)
        if self.next_refresh != refresh:
            return None
        pieces = None
        if self.pieces is not None:
            t, _, _, cmd, rows, col, bank = (np.array(f) for f in zip(*self.pieces[traced:]))
            pieces = (t - start, cmd, np.where(rows >= 0, rows - row, -1), col, bank)
        return _PassResult(
            self._relative(start, row),
            self.t_last - start,
            [a - b for a, b in zip(self.counts, counts)],
            [a - b for a, b in zip(self.by_controller, by_controller)],
            pieces,
        )

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
        floor, done, times, rows = known.exit
        device = self.device
        self.floor = start + floor
        self.done = start + done
        self.t_last = start + known.last
        device.times = [start + t for t in times]
        device.set_rows([row + r if r is not None else -1 for r in rows])
        self.counts = list(map(add, self.counts, known.counts))
        self.by_controller = list(map(add, self.by_controller, known.by_controller))
        if self.pieces is not None:
            t, cmd, rows_, col, bank = known.pieces
            rows_ = np.where(rows_ >= 0, rows_ + row, -1)
            self.pieces.append((t + start, 0, len(t), cmd, rows_, col, bank))

    def state(self) -> tuple:
        """Everything the rest of a simulation depends on (counts and trace aside)."""
        device = self.device
        return (
            self.t_last,
            self.floor,
            self.done,
            self.next_refresh,
            tuple(device.times),
            tuple(device.open),
        )

    def restore(self, state: tuple) -> None:
        """Put the controller back into a `state()`."""
        self.t_last, self.floor, self.done, self.next_refresh, times, rows = state
        self.device.times = list(times)
        self.device.set_rows(list(rows))


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
        order = np.lexsort((record, channel, segment[record]))
        record = record[order]
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


def simulate_fast(
    program: HbmProgram, hw, trace: bool = False, tokens: dict[int, int] | None = None
) -> HbmResult:
    """Simulate a validated, bound, plain `program`; same results as `simulate_reference`."""
    hbm = hw.hbm
    rules, geometry, layout = _tables(hbm)
    records = program.records
    streams = _ChannelStreams(records, hbm.total_channels)
    channels = [
        FastController(FastDevice(rules, geometry, layout), rules, trace)
        for _ in range(hbm.total_channels)
    ]
    trace_parts: list | None = [] if trace else None
    memo: dict[tuple, tuple] = {}
    passes: dict[tuple, _PassResult] = {}
    raised = dict(tokens or {})
    for segment in range(len(streams.sync) + 1):
        for group in streams.groups_of_segment(segment):
            start, end = int(streams.group_start[group]), int(streams.group_end[group])
            channel_index = int(streams.channel[start])
            channel = channels[channel_index]
            key = (streams.items[start:end].tobytes(), channel.state())
            if key not in memo:
                memo[key] = _simulate_group(channel, streams, group, trace, passes)
            exit_state, counts, by_controller, pieces = memo[key]
            channel.restore(exit_state)
            channel.counts = list(map(add, channel.counts, counts))
            channel.by_controller = list(map(add, channel.by_controller, by_controller))
            if trace_parts is not None:
                trace_parts.append((channel_index, pieces))
        if segment < len(streams.sync):
            _synchronize(records[streams.sync[segment]], channels, raised)
    return collect_result(
        hw,
        "fast",
        [channel.done for channel in channels],
        [sum(channel.counts[cmd] for channel in channels) for cmd in Cmd],
        [sum(channel.by_controller[cmd] for channel in channels) for cmd in Cmd],
        trace_parts,
    )


def _simulate_group(
    channel: FastController, streams: _ChannelStreams, group: int, trace: bool, passes: dict
) -> tuple:
    """Run one channel's instructions of one segment; return its exit state, the counts it
    added and its trace pieces."""
    counts, by_controller = channel.counts, channel.by_controller
    channel.counts, channel.by_controller = [0] * len(Cmd), [0] * len(Cmd)
    channel.pieces = [] if trace else None
    runs = range(int(streams.group_runs[group]), int(streams.group_runs_end[group]))
    starts = streams.run_start[runs.start : runs.stop].tolist()
    lengths = streams.run_length[runs.start : runs.stop].tolist()
    for start, length in zip(starts, lengths):
        op, row, col, n, bank = streams.items[start].tolist()
        if op in MERGEABLE:
            cols = streams.col[start : start + length] if trace else None
            channel.column_run(RAW_KINDS[op], row, length, cols)
        elif op in RAW_KINDS:
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
    result = (channel.state(), channel.counts, channel.by_controller, channel.pieces)
    channel.counts, channel.by_controller = counts, by_controller
    return result


def _synchronize(record, channels: list[FastController], raised: dict[int, int]) -> None:
    """Apply a cross-channel barrier, a signal or a wait."""
    op, lo, hi, n = int(record["op"]), int(record["ch_lo"]), int(record["ch_hi"]), int(record["n"])
    if op == HbmOp.BARRIER:
        span = channels[lo : hi if hi >= 0 else None]
        done = max(channel.done for channel in span)
        for channel in span:
            channel.wait_until(done)
    elif op == HbmOp.SIGNAL:
        raised[n] = max(channel.done for channel in channels)
    else:
        for channel in channels:
            channel.wait_until(raised[n])
