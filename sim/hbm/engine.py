"""Entry point of the HBM-PIM simulator: validation, engine choice, and the result.

`simulate(program, hw)` binds the program to a context length (`ctx`, when some count depends
on it), checks it against the hardware (every channel, bank, row, column and buffer slot in
range, in every iteration of a repeated section; every awaited token raised), unrolls its
sections, runs the fast engine (or the reference one) and returns an `HbmResult`: total and
per-channel cycles, command counts, energy, every instruction's interval (`timeline`) and, on
request, the command trace. Both engines build their result with `collect_result`, so the
two can only differ in the numbers they compute.

`start(program, hw)` is the same simulation driven step by step (`HbmSimulation`), which is
how the central scheduler (`hpim_ir.sim.scheduler`) runs the HBM-PIM stream beside the
SRAM-PIM one: `advance()` runs until the stream finishes or reaches a `wait` whose token is
not raised yet (`waiting`); `provide(token, cycle)` delivers it; `raised` holds the tokens
the stream's own signals raised, with their cycles.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.energy import energy_report
from hpim_ir.sim.hbm.normal import BankGeometry
from hpim_ir.sim.hbm.program import (
    HbmOp,
    HbmProgram,
    bind_context,
    expand_sections,
    has_context,
    where,
)
from hpim_ir.sim.hbm.timing import Cmd
from hpim_ir.sim.hbm.trace import assemble_trace

ENGINES = ("fast", "reference")

TIMELINE_DTYPE = np.dtype(
    [
        ("record", np.int32),  # the program record
        ("channel", np.int32),  # the channel; -1: a signal, wait or cross-channel barrier
        ("start", np.int64),
        ("end", np.int64),
    ]
)
"""Per record and channel it runs on, its interval (`ChannelController.span`: from its first
command, refreshes aside, to the completion of its last); per synchronizing record (channel
-1): a signal's raise cycle (start = end), a wait from when every earlier command had
completed to the token's cycle (start = end = the token's cycle if that was later), a
cross-channel barrier's release cycle."""


@dataclass(frozen=True)
class HbmResult:
    """What one simulation of an HBM-PIM instruction stream produced."""

    hardware: str
    engine: str
    tck_ns: float
    cycles: int
    """Cycle at which the last command (of any channel) completes."""
    channel_cycles: tuple[int, ...]
    """Per channel, the cycle at which its last command completes (0 if it had none)."""
    commands: dict[str, int]
    """Device commands issued, per kind, including those the controllers added."""
    controller_commands: dict[str, int]
    """Of `commands`, those the controllers added: row-miss ACT/PRE and refresh PRE/REF."""
    energy_pj: dict[str, float]
    trace: np.ndarray | None
    """The command trace (`trace.TRACE_DTYPE`), sorted by cycle, when it was requested."""
    timeline: np.ndarray = field(compare=False, repr=False)
    """Every instruction's interval on every channel (`TIMELINE_DTYPE`), sorted by record,
    then channel (not compared: `==` on results compares the figures)."""

    @property
    def ns(self) -> float:
        return self.cycles * self.tck_ns

    def as_dict(self) -> dict:
        """The result as plain JSON-able data (without the trace)."""
        return {
            "hardware": self.hardware,
            "engine": self.engine,
            "cycles": self.cycles,
            "ns": self.ns,
            "tck_ns": self.tck_ns,
            "channel_cycles": list(self.channel_cycles),
            "commands": self.commands,
            "controller_commands": self.controller_commands,
            "energy_pj": self.energy_pj,
        }


def simulate(
    program: HbmProgram,
    hw,
    engine: str = "fast",
    trace: bool = False,
    source: str = "<program>",
    tokens: Mapping[int, int] | None = None,
    ctx: int | None = None,
) -> HbmResult:
    """Simulate an HBM-PIM instruction stream on `hw` (a `Hardware`).

    `engine` is `fast` or `reference` (same cycles, counts and trace; the reference is slow).
    `trace` records the command trace. `source` names the program in error messages.
    `tokens` maps tokens raised by other streams to the cycle they are raised at. `ctx` is
    the context length the counts of context-dependent instructions are bound to (required
    when the program has any, ignored otherwise).
    """
    if engine not in ENGINES:
        raise HpimError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if ctx is not None:
        program = bind_context(program, ctx, source)
    elif has_context(program):
        first = int(np.argmax(program.records["per_ctx"] != 0))
        raise HpimError(
            f"{where(program.records, first, source)}: {_op_name(program.records['op'][first])}"
            " depends on the context length (ctx=); give one to simulate it "
            "(simulate(..., ctx=N), hpim run-isa --ctx N)"
        )
    validate_program(program, hw, source, tokens or {})
    return start(expand_sections(program), hw, engine, trace, tokens).run()


def start(
    program: HbmProgram,
    hw,
    engine: str = "fast",
    trace: bool = False,
    tokens: Mapping[int, int] | None = None,
) -> "HbmSimulation":
    """A simulation of a validated, bound, plain (`expand_sections`) `program` to drive step
    by step (`HbmSimulation`); `tokens` are tokens other streams have already raised."""
    if engine not in ENGINES:
        raise HpimError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "fast":
        from hpim_ir.sim.hbm.fast import FastSimulation as Simulation
    else:
        from hpim_ir.sim.hbm.reference import ReferenceSimulation as Simulation
    return Simulation(program, hw, trace, dict(tokens or {}))


class HbmSimulation:
    """An HBM-PIM program in flight; each engine subclasses it with its own walk.

    Synchronization is the same in both (`_sync`): `hbm.signal` raises its token at the
    cycle by which every earlier instruction of every channel has completed (its commands,
    and the waits and barriers before it); `hbm.wait` holds every channel's later commands
    until its token's cycle; a barrier over several channels holds theirs until their
    earlier commands have completed."""

    engine = ""

    def __init__(self, program: HbmProgram, hw, trace: bool, tokens: dict[int, int]) -> None:
        self.program = program
        self.records = program.records
        self.hw = hw
        self.trace = trace
        self.tokens: dict[int, int] = dict(tokens)
        """Tokens provided by other streams (token -> cycle)."""
        self.raised: dict[int, int] = {}
        """Tokens raised by this stream's signals (token -> cycle)."""
        self.blocked_at: int | None = None
        """The record of the wait the simulation stopped at, None if it is not stopped."""
        self.sync_spans: dict[int, tuple[int, int]] = {}
        """Per synchronizing record done: its interval (see `TIMELINE_DTYPE`)."""
        self.finished = False

    @property
    def waiting(self) -> int | None:
        """The token the simulation stopped at a wait for (None if it is not stopped)."""
        return None if self.blocked_at is None else int(self.records["n"][self.blocked_at])

    def provide(self, token: int, cycle: int) -> None:
        """Token `token` was raised by another stream at `cycle` (HBM command cycles)."""
        if token in self.tokens or token in self.raised:
            raise HpimError(f"token {token} is raised twice (provided at cycle {cycle})")
        self.tokens[token] = cycle

    def advance(self) -> bool:
        """Run until the program ends (True) or reaches a wait for a token that is not
        raised yet (False: `waiting` names it; `provide` it and advance again)."""
        raise NotImplementedError

    def run(self) -> HbmResult:
        """Run to the end and return the result; every awaited token must be known."""
        if not self.advance():
            raise HpimError(
                f"hbm.wait tok={self.waiting} (record {self.blocked_at}): the token is never "
                "raised (no earlier hbm.signal, and no other stream provides it)"
            )
        return self.result()

    def result(self) -> HbmResult:
        """The result of a finished simulation."""
        if not self.finished:
            raise HpimError(
                f"the HBM-PIM simulation has not finished: it waits for token {self.waiting}"
            )
        return self._collect()

    def _collect(self) -> HbmResult:
        raise NotImplementedError

    def _sync(self, index: int, channels: list) -> bool:
        """Apply synchronizing record `index` (a signal, a wait, a cross-channel barrier) to
        the channel controllers; False if it is a wait whose token is not raised yet."""
        op, lo, hi, n = (int(self.records[f][index]) for f in ("op", "ch_lo", "ch_hi", "n"))
        reached = max(max(channel.done, channel.floor) for channel in channels)
        if op == HbmOp.BARRIER:
            span = channels[lo : hi if hi >= 0 else None]
            done = max(channel.done for channel in span)
            for channel in span:
                channel.wait_until(done)
            self.sync_spans[index] = (done, done)
        elif op == HbmOp.SIGNAL:
            self.raised[n] = reached
            self.sync_spans[index] = (reached, reached)
        else:
            when = self.raised.get(n, self.tokens.get(n))
            if when is None:
                self.blocked_at = index
                return False
            self.blocked_at = None
            for channel in channels:
                channel.wait_until(when)
            self.sync_spans[index] = (min(reached, when), when)
        return True

    def timeline(
        self,
        record: np.ndarray,
        channel: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        in_order: bool = False,
    ) -> np.ndarray:
        """The `TIMELINE_DTYPE` array of per-channel intervals and `sync_spans` (`in_order`:
        the intervals come sorted by record, then channel, so only the synchronizing
        records need placing among them)."""
        sync = np.array(sorted(self.sync_spans), dtype=np.int64)
        spans = np.array([self.sync_spans[i] for i in sync.tolist()], dtype=np.int64).reshape(-1, 2)
        timeline = np.empty(len(record) + len(sync), dtype=TIMELINE_DTYPE)
        if in_order:
            # A synchronizing record runs on no channel: it goes before the next record's.
            at = np.searchsorted(record, sync)
            timeline["record"] = np.insert(record, at, sync)
            timeline["channel"] = np.insert(channel, at, -1)
            timeline["start"] = np.insert(start, at, spans[:, 0])
            timeline["end"] = np.insert(end, at, spans[:, 1])
            return timeline
        records = np.concatenate([record, sync])
        channels = np.concatenate([channel, np.full(len(sync), -1)])
        # One integer key (record, then channel) sorts much faster than a lexsort.
        order = np.argsort(records * (self.hw.hbm.total_channels + 1) + channels + 1, kind="stable")
        timeline["record"] = records[order]
        timeline["channel"] = channels[order]
        timeline["start"] = np.concatenate([start, spans[:, 0]])[order]
        timeline["end"] = np.concatenate([end, spans[:, 1]])[order]
        return timeline


def collect_result(
    hw,
    engine: str,
    channel_cycles: Sequence[int],
    counts: Sequence[int],
    by_controller: Sequence[int],
    trace_parts: list | None,
    timeline: np.ndarray,
) -> HbmResult:
    """Build the result from per-channel completion cycles, per-`Cmd` counts, when tracing
    the `(channel, pieces)` parts of the trace in per-channel issue order, and the
    timeline."""
    hbm = hw.hbm
    cycles = max(channel_cycles, default=0)
    command_counts = {cmd.name: int(counts[cmd]) for cmd in Cmd}
    return HbmResult(
        hardware=hw.name,
        engine=engine,
        tck_ns=hbm.timing.tCK_ns,
        cycles=int(cycles),
        channel_cycles=tuple(int(c) for c in channel_cycles),
        commands=command_counts,
        controller_commands={
            cmd.name: int(by_controller[cmd])
            for cmd in (Cmd.ACT_AB, Cmd.PRE_AB, Cmd.REF_AB, Cmd.ACT, Cmd.PRE)
        },
        energy_pj=energy_report(command_counts, cycles * hbm.timing.tCK_ns, hbm),
        trace=(
            assemble_trace(trace_parts, BankGeometry.of(hbm)) if trace_parts is not None else None
        ),
        timeline=timeline,
    )


def _op_name(op: int) -> str:
    return f"hbm.{HbmOp(op).name.lower()}"


_ROWS = (HbmOp.GEMV, HbmOp.READ, HbmOp.WRITE)
"""Instructions over `n` rows from `row`."""
_ACCESSES = (HbmOp.RD, HbmOp.WR, HbmOp.RDA, HbmOp.WRA)
_BANKED = (HbmOp.ACT, HbmOp.PRE, *_ACCESSES)
"""Instructions with a bank."""
_WITH_ROW = (HbmOp.MAC_AB, HbmOp.ACT_AB, HbmOp.ACT, *_ROWS, *_ACCESSES)


def validate_program(
    program: HbmProgram, hw, source: str, tokens: Mapping[int, int]
) -> None:
    """Raise `HpimError` naming the first record (by source line) that the hardware cannot
    run: an unknown op, a channel, bank, row, column or slot out of range (rows in every
    iteration of its section), an empty macro, a count still depending on the context, or a
    wait for a token nothing raises before it."""
    hbm = hw.hbm
    records = program.records
    op = records["op"].astype(np.int64)
    lo = records["ch_lo"].astype(np.int64)
    hi = records["ch_hi"].astype(np.int64)
    row = records["row"].astype(np.int64)
    col = records["col"].astype(np.int64)
    n = records["n"].astype(np.int64)
    bank = records["bank"].astype(np.int64)
    # The largest row move of each record: (repeat - 1) x row_stride of its section.
    moves = np.array([(s.times - 1) * s.stride for s in program.sections], dtype=np.int64)
    move = np.repeat(moves, [s.stop - s.start for s in program.sections])
    channels = hbm.total_channels
    slots = hbm.global_buffer_slots
    columns = min(hbm.columns, slots)
    banks = hbm.banks_per_channel
    machine = f"{hw.name} has"

    def channel_text(i: int) -> str:
        return f"ch={lo[i]}" if hi[i] == lo[i] + 1 else f"ch={lo[i]}:{hi[i]}"

    def row_text(i: int) -> str:
        text = f"{_op_name(op[i])} row={row[i]}" + (f" rows={n[i]}" if op[i] in _ROWS else "")
        if move[i]:
            section = next(s for s in program.sections if s.start <= i < s.stop)
            name = f" {section.name!r}" if section.name is not None else ""
            text += (
                f" in iteration {section.times - 1} of section{name} (row_stride="
                f"{section.stride}: row {row[i] + move[i]})"
            )
        return text

    synced = (op == HbmOp.SIGNAL) | (op == HbmOp.WAIT)
    all_channels = (lo == 0) & (hi == -1)
    is_op = {kind: op == kind for kind in HbmOp}
    banked = np.isin(op, _BANKED)
    over_rows = np.isin(op, _ROWS)
    accesses = np.isin(op, _ACCESSES)
    streams = is_op[HbmOp.READ] | is_op[HbmOp.WRITE]
    has_row = np.isin(op, _WITH_ROW)
    checks = [
        (
            (op < 0) | (op > max(HbmOp)),
            lambda i: f"unknown HBM instruction kind {op[i]}",
        ),
        (
            (records["per_ctx"] != 0) | (records["ctx_off"] != 0),
            lambda i: f"{_op_name(op[i])} still depends on the context length "
            "(bind_context first)",
        ),
        (
            ~synced & ~all_channels & ((lo < 0) | (hi <= lo) | (hi > channels)),
            lambda i: f"{_op_name(op[i])} {channel_text(i)} is out of range: "
            f"{machine} {channels} channels (0..{channels - 1})",
        ),
        (
            banked & ((bank < 0) | (bank >= banks)),
            lambda i: f"{_op_name(op[i])} bank={bank[i]} is out of range: {machine} {banks} "
            f"banks per channel (0..{banks - 1})",
        ),
        (
            has_row & ((row < 0) | (row + move + np.where(over_rows, n, 1) > hbm.rows)),
            lambda i: f"{row_text(i)} is out of range: {machine} {hbm.rows} rows "
            f"(0..{hbm.rows - 1})",
        ),
        (
            over_rows & (n < 1),
            lambda i: f"{_op_name(op[i])} rows={n[i]}: needs at least one row",
        ),
        (
            is_op[HbmOp.MAC_AB] & ((col < 0) | (col >= columns)),
            lambda i: f"hbm.mac_ab col={col[i]} is out of range: {machine} {hbm.columns} "
            f"columns and {slots} global-buffer slots (0..{columns - 1})",
        ),
        (
            accesses & ((col < 0) | (col >= hbm.columns)),
            lambda i: f"{_op_name(op[i])} col={col[i]} is out of range: {machine} "
            f"{hbm.columns} columns (0..{hbm.columns - 1})",
        ),
        (
            is_op[HbmOp.WR_GB] & ((col < 0) | (col >= slots)),
            lambda i: f"hbm.wr_gb col={col[i]} is out of range: {machine} {slots} "
            f"global-buffer slots (0..{slots - 1})",
        ),
        (
            is_op[HbmOp.GEMV] & ((col < 1) | (col > columns)),
            lambda i: f"hbm.gemv cols={col[i]} is out of range: {machine} {hbm.columns} "
            f"columns and {slots} global-buffer slots (1..{columns})",
        ),
        (
            streams & ((col < 1) | (col > hbm.columns)),
            lambda i: f"{_op_name(op[i])} cols={col[i]} is out of range: {machine} "
            f"{hbm.columns} columns (1..{hbm.columns})",
        ),
        (
            is_op[HbmOp.LOAD_GB] & ((col < 1) | (col > slots)),
            lambda i: f"hbm.load_gb cols={col[i]} is out of range: {machine} {slots} "
            f"global-buffer slots (1..{slots})",
        ),
        (
            is_op[HbmOp.READOUT] & (n < 1),
            lambda i: f"hbm.readout n={n[i]}: a readout needs at least one burst",
        ),
    ]
    bad = [(int(np.argmax(mask)), message) for mask, message in checks if mask.any()]
    if bad:
        index, message = min(bad, key=lambda item: item[0])
        raise HpimError(f"{where(records, index, source)}: {message(index)}")
    raised = set(tokens)
    for i in np.flatnonzero(synced).tolist():
        if op[i] == HbmOp.SIGNAL:
            raised.add(int(n[i]))
        elif n[i] not in raised:
            later = np.flatnonzero((op == HbmOp.SIGNAL) & (n == n[i]) & (np.arange(len(op)) > i))
            raiser = (
                f": hbm.signal tok={n[i]} at {where(records, int(later[0]), source)} raises it "
                "only after the wait (a deadlock)"
                if len(later)
                else ""
            )
            raise HpimError(
                f"{where(records, i, source)}: hbm.wait tok={n[i]} waits for a token that "
                "nothing raises before it (no earlier hbm.signal, and no other stream provides "
                f"it){raiser}"
            )
