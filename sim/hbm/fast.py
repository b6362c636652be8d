"""The fast HBM-PIM engine: the reference engine's results, without per-command work.

Three exact shortcuts, each proved against `reference.py` by the tests:

1. Lock-step banks. Every command of the ISA addresses all banks of a channel (or none), so
   all banks always share one state: `FastDevice` keeps one issue cycle per command kind and
   the last four ACTs, and applies the folded table of `timing.Rules`.
2. Closed form per run. After the first of a run of identical column commands (`MAC_AB`s to
   one row, `WR_GB`s, `RD_OUT`s) every other bound is already met, so command i of the run
   issues at `t0 + i * gap[c][c]`; the run only breaks where a refresh falls due, at
   `(next_refresh - 1 - t0) // gap` commands. A macro (`gemv`, `load_gb`, `readout`) is
   such runs (one per GEMV row) and is never expanded into commands.
3. Memoization. The program is split into segments at cross-channel synchronization (barriers
   over several channels, signal, wait); within a segment channels are independent, and a
   channel's result depends only on its instructions and its state on entry. Channels with
   identical instructions (channel numbers aside) and identical entry state are simulated
   once; the others copy the result. Nothing is assumed symmetric that is not identical.

The program is split into per-channel instruction lists and runs with numpy; Python loops
only over runs, row changes and refreshes.
"""

from operator import add

import numpy as np

from hpim_ir.sim.hbm.controller import ChannelController
from hpim_ir.sim.hbm.engine import HbmResult, collect_result
from hpim_ir.sim.hbm.program import HbmOp, HbmProgram
from hpim_ir.sim.hbm.timing import NEVER, Cmd, Rules

MERGEABLE = (HbmOp.MAC_AB, HbmOp.WR_GB, HbmOp.RD_OUT)
"""Raw instructions that form runs when consecutive (MACs: to the same row)."""


class FastDevice:
    """All banks of one channel as one: they are in lock-step under all-bank commands."""

    __slots__ = ("last", "acts", "open_row", "_gap_to", "_faw")

    def __init__(self, rules: Rules) -> None:
        self.last = [NEVER] * len(Cmd)
        """Issue cycle of the most recent command of each kind."""
        self.acts = (NEVER,) * 4
        """The last four ACTs, oldest first."""
        self.open_row = -1
        self._gap_to = tuple(tuple(rules.gap[p][c] for p in Cmd) for c in Cmd)
        self._faw = rules.faw

    def earliest(self, cmd: Cmd, row: int) -> int:
        t = max(map(add, self.last, self._gap_to[cmd]))
        if cmd == Cmd.ACT_AB:
            return max(t, self.acts[0] + self._faw)
        return t

    def commit(self, cmd: Cmd, cycle: int, row: int) -> None:
        self.last[cmd] = cycle
        if cmd == Cmd.ACT_AB:
            self.open_row = row
            self.acts = self.acts[1:] + (cycle,)
        elif cmd == Cmd.PRE_AB:
            self.open_row = -1


class FastController(ChannelController):
    """A channel controller that issues runs of identical column commands in closed form."""

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
                self.device.last[cmd] = last
                self.t_last = last
                self.done = max(self.done, last + completion)
                self.counts[cmd] += more
                if self.pieces is not None:
                    self.pieces.append(
                        (first + step, step, more, int(cmd), row, cols[issued : issued + more])
                    )
                issued += more

    def state(self) -> tuple:
        """Everything the rest of a simulation depends on (counts and trace aside)."""
        device = self.device
        return (
            self.t_last,
            self.floor,
            self.done,
            self.next_refresh,
            tuple(device.last),
            device.acts,
            device.open_row,
        )

    def restore(self, state: tuple) -> None:
        """Put the controller back into a `state()`."""
        self.t_last, self.floor, self.done, self.next_refresh, last, acts, open_row = state
        self.device.last, self.device.acts, self.device.open_row = list(last), acts, open_row


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
        self.items = np.stack([self.op, self.row, self.col, self.n], axis=1)
        """Per item, what the timing and the trace depend on (not the channel)."""

    def groups_of_segment(self, segment: int) -> range:
        first, last = np.searchsorted(self.segment[self.group_start], [segment, segment + 1])
        return range(int(first), int(last))


def simulate_fast(
    program: HbmProgram, hw, trace: bool = False, tokens: dict[int, int] | None = None
) -> HbmResult:
    """Simulate a validated `program`; same results as `simulate_reference`."""
    hbm = hw.hbm
    rules = Rules.from_hbm(hbm)
    records = program.records
    streams = _ChannelStreams(records, hbm.total_channels)
    channels = [FastController(FastDevice(rules), rules, trace) for _ in range(hbm.total_channels)]
    trace_parts: list | None = [] if trace else None
    memo: dict[tuple, tuple] = {}
    raised = dict(tokens or {})
    for segment in range(len(streams.sync) + 1):
        for group in streams.groups_of_segment(segment):
            start, end = int(streams.group_start[group]), int(streams.group_end[group])
            channel_index = int(streams.channel[start])
            channel = channels[channel_index]
            key = (streams.items[start:end].tobytes(), channel.state())
            if key not in memo:
                memo[key] = _simulate_group(channel, streams, group, trace)
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
    channel: FastController, streams: _ChannelStreams, group: int, trace: bool
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
        op, row, col, n = streams.items[start].tolist()
        if op == HbmOp.MAC_AB:
            cols = streams.col[start : start + length] if trace else None
            channel.column_run(Cmd.MAC_AB, row, length, cols)
        elif op == HbmOp.WR_GB:
            cols = streams.col[start : start + length] if trace else None
            channel.column_run(Cmd.WR_GB, -1, length, cols)
        elif op == HbmOp.RD_OUT:
            channel.column_run(Cmd.RD_OUT, -1, length, np.full(length, -1) if trace else None)
        elif op == HbmOp.ACT_AB:
            channel.instruction(Cmd.ACT_AB, row)
        elif op == HbmOp.PRE_AB:
            channel.instruction(Cmd.PRE_AB)
        elif op == HbmOp.BARRIER:
            channel.wait_until(channel.done)
        elif op == HbmOp.GEMV:
            cols = np.arange(col) if trace else None
            for r in range(row, row + n):
                channel.column_run(Cmd.MAC_AB, r, col, cols)
        elif op == HbmOp.LOAD_GB:
            channel.column_run(Cmd.WR_GB, -1, col, np.arange(col) if trace else None)
        else:  # READOUT
            channel.column_run(Cmd.RD_OUT, -1, n, np.full(n, -1) if trace else None)
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
