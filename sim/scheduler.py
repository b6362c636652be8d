"""The central scheduler: both subsystems of the machine simulated together.

`simulate_machine(program, hw, ctx)` runs one decode step of a `MachineProgram`: the
HBM-PIM stream on its DRAM-command engine (`hpim_ir.sim.hbm`), the SRAM-PIM stream on its
instruction-level engine (`hpim_ir.sim.sram`), concurrently, honouring `signal` / `wait` in
both directions, and returns a `MachineResult`. The rules (docs/scheduler.md):

- Tokens. Every token is raised once per step (a repeated section's tokens are renumbered
  per iteration, `MachineStep`). A token raised by one subsystem at cycle c of its clock
  reaches the other at the first of its own cycles at or after c's time: the HBM command
  clock runs at tCK, the SRAM-PIM clock at 1 / `sram.clock_mhz`, and the conversion is
  exact (rational clock periods, ceiling). A token carries no data: what crosses the link
  is timed by the SRAM-PIM `load` / `store` that follows the wait or precedes the signal.
- Concurrency. The HBM-PIM stream runs until it reaches a `wait` whose token is not raised
  yet; every token it raised so far goes to the SRAM-PIM side. The SRAM-PIM engine then
  processes its events in cycle order until that token is raised, and the HBM-PIM stream
  resumes. An HBM-PIM token raised later is never earlier than the token that released
  it, and the SRAM-PIM side never runs past that one, so each side sees the other's tokens
  before it needs them, and the result does not depend on the order of evaluation.
- Deadlock. A wait that no signal can satisfy (no instruction raises the token, or its
  raiser sits behind a wait that cannot be satisfied) stops the run with one `HpimError`
  naming the token, the waiting instruction and the raising one.
- Reports. Per subsystem: cycles (its last completion), busy cycles (the union of the
  intervals its records occupy: an HBM record on a channel from the first command issued
  for it, refreshes aside, to the completion of its last; an SRAM-PIM instruction on a
  core from dispatch to completion), idle cycles (the step's length in its clock minus
  busy), the time both subsystems are busy (overlap), per channel and per core busy
  cycles, energy; and per unrolled record its start and end.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from math import ceil

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.energy import energy_report as hbm_energy_report
from hpim_ir.sim.hbm.engine import HbmResult
from hpim_ir.sim.hbm.engine import start as start_hbm
from hpim_ir.sim.hbm.program import HbmOp
from hpim_ir.sim.program import MachineProgram, MachineStep
from hpim_ir.sim.sram.energy import SramEnergy
from hpim_ir.sim.sram.energy import energy_report as sram_energy_report
from hpim_ir.sim.sram.engine import SramEngine, SramResult, SramSimulation
from hpim_ir.sim.sram.program import SramOp


@dataclass(frozen=True)
class Clocks:
    """The two clocks as exact periods in ns, and the conversions between them."""

    hbm_ns: Fraction
    """tCK, 4 / data rate (4 data beats per command clock)."""
    sram_ns: Fraction
    """1000 / `sram.clock_mhz`."""

    @staticmethod
    def of(hw) -> Clocks:
        hbm = Fraction(4) / Fraction(repr(hw.hbm.data_rate_gbps))
        sram = Fraction(1000) / Fraction(repr(hw.sram.clock_mhz)) if hw.sram else Fraction(1)
        return Clocks(hbm, sram)

    def hbm_to_sram(self, cycle: int) -> int:
        """The first SRAM-PIM cycle at or after HBM cycle `cycle`'s time."""
        return ceil(cycle * self.hbm_ns / self.sram_ns)

    def sram_to_hbm(self, cycle: int) -> int:
        """The first HBM cycle at or after SRAM-PIM cycle `cycle`'s time."""
        return ceil(cycle * self.sram_ns / self.hbm_ns)

    @property
    def units(self) -> tuple[int, int]:
        """Each clock's period in a common integer time unit (1 / lcm of the periods'
        denominators ns): interval arithmetic across the clocks stays exact."""
        unit = np.lcm(self.hbm_ns.denominator, self.sram_ns.denominator)
        return int(self.hbm_ns * unit), int(self.sram_ns * unit)

    @property
    def unit_ns(self) -> Fraction:
        return Fraction(1, int(np.lcm(self.hbm_ns.denominator, self.sram_ns.denominator)))


@dataclass(frozen=True)
class SubsystemReport:
    """One subsystem's share of a step, in its own clock."""

    cycle_ns: float
    cycles: int
    """Completion of its last record."""
    total_cycles: int
    """The step's length in this clock: the first cycle at or after the later subsystem's
    completion."""
    busy_cycles: int
    """The union of the intervals its records occupy (see the module docstring)."""
    overlap_ns: float
    """Time during which the other subsystem is busy too."""
    busy: tuple[int, ...]
    """Per HBM channel / SRAM-PIM core: the union of its records' intervals."""
    energy_pj: dict[str, float]

    @property
    def idle_cycles(self) -> int:
        return self.total_cycles - self.busy_cycles

    @property
    def ns(self) -> float:
        return self.cycles * self.cycle_ns

    @property
    def busy_ns(self) -> float:
        return self.busy_cycles * self.cycle_ns

    def as_dict(self) -> dict:
        return {
            "cycles": self.cycles,
            "ns": self.ns,
            "total_cycles": self.total_cycles,
            "busy_cycles": self.busy_cycles,
            "idle_cycles": self.idle_cycles,
            "busy_ns": self.busy_ns,
            "overlap_ns": self.overlap_ns,
            "busy": list(self.busy),
            "energy_pj": self.energy_pj,
        }


@dataclass(frozen=True)
class PartTimes:
    """Where a step's time goes, by the `part` tag of its instructions ("" untagged), in ns
    (see the module docstring)."""

    share_ns: dict[str, float]
    """Each part's share of the step; with `idle_ns`, they sum to the step."""
    span_ns: dict[str, float]
    """Per part, the time during which some unit works for it."""
    idle_ns: float
    """The time during which no unit works."""


@dataclass(frozen=True)
class MachineResult:
    """One decode step of the whole machine."""

    hardware: str
    ctx: int
    ns: float
    """The step: the later subsystem's completion."""
    overlap_ns: float
    """Time during which both subsystems are busy."""
    hbm: HbmResult
    """The HBM-PIM engine's result (cycles, per-channel cycles, commands, its energy with
    background over its own cycles, the command trace when requested, `timeline`)."""
    sram: SramResult | None
    """The SRAM-PIM engine's result (None for an HBM-PIM-only program)."""
    hbm_report: SubsystemReport
    sram_report: SubsystemReport | None
    tokens: dict[int, tuple[str, float]]
    """Renumbered token -> the subsystem that raised it (`hbm` / `sram`) and when (ns)."""
    step: MachineStep
    """The unrolled streams and the map back to the program (`hbm_origin`, ...)."""
    hbm_start: np.ndarray
    """Per unrolled HBM record (`step.hbm`): the first command issued for it on any of its
    channels, refreshes aside (HBM cycles); a record that issues nothing (a barrier, a
    wait, an act_ab of an open row): when it took effect."""
    hbm_end: np.ndarray
    """Per unrolled HBM record: the completion of its last command on any channel."""
    sram_start: np.ndarray
    """Per unrolled SRAM-PIM record (`step.sram`): its first dispatch on any core."""
    sram_end: np.ndarray
    """Per unrolled SRAM-PIM record: its last completion on any core."""
    clocks: Clocks

    def part_times(self) -> PartTimes:
        """The step's time by part (`PartTimes`; the rule is in the module docstring)."""
        step = self.step
        hbm = self.hbm.timeline
        sides = [(hbm["channel"], hbm, step.hbm_parts(), len(step.hbm.records))]
        if self.sram is not None:
            lines = self.sram.timeline
            sides.append((lines["core"], lines, step.sram_parts(), len(step.sram.records)))
        tags = [np.full(count, "") if parts is None else parts for _, _, parts, count in sides]
        names = np.unique(np.concatenate(tags))
        channels = len(self.hbm_report.busy)
        cores = len(self.sram_report.busy) if self.sram is not None else 1
        # A channel weighs cores, a core channels: either subsystem, all busy, weighs the same.
        weights = (cores, channels)
        merged = []
        for (unit, lines, _, _), tag, scale, weight in zip(sides, tags, self.clocks.units, weights):
            # In each side's own cycles; HBM-PIM's channel -1 (signals, waits) is no work.
            part = np.searchsorted(names, tag)[lines["record"]]
            _, part, start, end = unit_part_intervals(
                unit, part, lines["start"], lines["end"], len(names)
            )
            merged.append((part, start * scale, end * scale, np.full(len(part), weight)))
        columns = (np.concatenate(column) for column in zip(*merged))
        share, span, busy = split_by_part(*columns, len(names))
        unit_ns = float(self.clocks.unit_ns)
        names = names.tolist()
        return PartTimes(
            dict(zip(names, (share * unit_ns).tolist())),
            dict(zip(names, (span * unit_ns).tolist())),
            max(self.ns - busy * unit_ns, 0.0),
        )

    @property
    def energy_pj(self) -> dict[str, float]:
        energy = {"hbm": self.hbm_report.energy_pj["total"]}
        if self.sram_report is not None:
            energy["sram"] = self.sram_report.energy_pj["total"]
        energy["total"] = sum(energy.values())
        return energy

    def as_dict(self) -> dict:
        """Plain JSON-able data (no timelines, no trace)."""
        report = {
            "hardware": self.hardware,
            "ctx": self.ctx,
            "ns": self.ns,
            "overlap_ns": self.overlap_ns,
            "energy_pj": self.energy_pj,
            "hbm": self.hbm.as_dict() | {"machine": self.hbm_report.as_dict()},
        }
        if self.sram is not None:
            report["sram"] = self.sram.as_dict() | {"machine": self.sram_report.as_dict()}
        report["tokens"] = {
            str(token): {"by": side, "ns": ns} for token, (side, ns) in self.tokens.items()
        }
        return report


def simulate_machine(
    program: MachineProgram,
    hw,
    ctx: int | None = None,
    engine: str = "fast",
    trace: bool = False,
    sram_energy: SramEnergy | None = None,
) -> MachineResult:
    """Simulate one decode step of `program` at context length `ctx` on `hw` (see the
    module docstring). `engine` is the HBM-PIM engine (`fast` or `reference`); `trace`
    records the HBM command trace (`result.hbm.trace`)."""
    if program.has_sram and (hw.sram is None or hw.link is None):
        raise HpimError(
            f"{program.source}: the program has an SRAM-PIM stream, but hardware {hw.name!r} "
            "has no SRAM-PIM subsystem"
        )
    step = program.step(hw, ctx)
    return Scheduler(step, hw, engine, trace).run(sram_energy)


class Scheduler:
    """One step in flight: the two engines and the tokens between them."""

    def __init__(self, step: MachineStep, hw, engine: str = "fast", trace: bool = False):
        self.step = step
        self.hw = hw
        self.clocks = Clocks.of(hw)
        _check_raisers(step)
        self.hbm = start_hbm(step.hbm, hw, engine=engine, trace=trace)
        self.sram: SramSimulation | None = None
        if step.program.has_sram:
            self.sram = SramEngine(hw).start(
                step.sram, step.ctx, source=step.program.source, where=step.sram_where
            )
        self.to_sram = 0
        """How many HBM-raised tokens (`hbm.raised`, in the order raised) the SRAM-PIM side
        has been given."""

    def run(self, sram_energy: SramEnergy | None = None) -> MachineResult:
        hbm, sram = self.hbm, self.sram
        while True:
            finished = hbm.advance()
            if sram is not None:
                # Only the tokens raised since the last hand-off: the newest, last in order.
                new = len(hbm.raised) - self.to_sram
                for token, cycle in reversed(list(islice(reversed(hbm.raised.items()), new))):
                    arrival = self.clocks.hbm_to_sram(cycle)
                    # The SRAM-PIM side never runs past a cycle an HBM-PIM token may
                    # still arrive at (see the module docstring).
                    assert arrival >= sram.now, (token, arrival, sram.now)
                    sram.provide(token, arrival)
                self.to_sram += new
            if finished:
                break
            token = hbm.waiting
            cycle = self._sram_raise(token)
            hbm.provide(token, self.clocks.sram_to_hbm(cycle))
        if sram is not None:
            sram.advance()
            if not sram.finished:
                raise HpimError(self._sram_deadlock())
        return self._result(sram_energy)

    def _sram_raise(self, token: int) -> int:
        """Run the SRAM-PIM side until it raises `token` (the HBM-PIM side waits for it);
        its cycle. Stops at the first event cycle that raises it, so the SRAM-PIM side
        never runs past a time at which the resumed HBM-PIM side may raise a token."""
        cycle = self.sram.advance_until_raised(token) if self.sram is not None else None
        if cycle is None:
            raise HpimError(self._hbm_deadlock(token))
        return cycle

    # -- deadlocks ---------------------------------------------------------------------------

    def _sram_raiser(self, token: int) -> int | None:
        """The SRAM-PIM signal record that raises `token`, if any."""
        records = self.step.sram.records
        hits = np.flatnonzero((records["op"] == SramOp.SIGNAL) & (records["tok"] == token))
        return int(hits[0]) if len(hits) else None

    def _hbm_deadlock(self, token: int) -> str:
        step = self.step
        waiter = f"{step.hbm_instruction(self.hbm.blocked_at)} (every channel)"
        return self._deadlock(token, waiter)

    def _sram_deadlock(self) -> str:
        core, record, token = self.sram.stalls()[0]
        if token is None:  # a collective some member never reaches
            return self._collective_stall(core, record)
        waiter = f"{self.step.sram_instruction(record)} on core {core}"
        return self._deadlock(token, waiter)

    def _deadlock(self, token: int, waiter: str) -> str:
        """The message for a wait (`waiter`) for `token` that nothing can satisfy. Its raiser
        is an SRAM-PIM signal: a wait for a token no instruction raises was found before the
        run (`_check_raisers`), an HBM-PIM wait for a later HBM-PIM signal when the step was
        made, and once the HBM-PIM stream has finished, every token it raises is known."""
        step = self.step
        head = f"deadlock on {step.token_name(token)}: {waiter} waits for it"
        record = self._sram_raiser(token)
        if record is None:
            return f"{head}, and no instruction raises it"
        what = step.sram_instruction(record)
        for core, stuck, stuck_token in self.sram.stalls():
            if not self.sram.reached(core, record):
                if stuck_token is None:
                    reason = f"at {step.sram_instruction(stuck)} (a collective some core never reaches)"
                else:
                    reason = (
                        f"at {step.sram_instruction(stuck)} (waiting for "
                        f"{step.token_name(stuck_token)})"
                    )
                return f"{head}; {what} would raise it, but core {core} stops before it, {reason}"
        raise AssertionError(f"token {token}: its raiser is reachable, yet nothing raised it")

    def _collective_stall(self, core: int, record: int) -> str:
        members = self.sram.absent(record)
        return (
            f"deadlock: {self.step.sram_instruction(record)} on core {core} waits for cores "
            f"{members}, which never reach it"
        )

    # -- the result --------------------------------------------------------------------------

    def _result(self, sram_energy: SramEnergy | None) -> MachineResult:
        hw, step, clocks = self.hw, self.step, self.clocks
        hbm = self.hbm.result()
        sram = self.sram.result(timeline=True) if self.sram is not None else None
        hbm_unit, sram_unit = clocks.units
        sram_cycles = sram.cycles if sram is not None else 0
        end_units = max(hbm.cycles * hbm_unit, sram_cycles * sram_unit)
        ns = float(end_units * clocks.unit_ns)
        # Signals, waits and cross-channel barriers do no work: a point, when they take effect.
        timeline = hbm.timeline
        channel, end = timeline["channel"], timeline["end"]
        work = channel >= 0
        start = np.where(work, timeline["start"], end)
        hbm_start, hbm_end = _per_record(len(step.hbm.records), timeline["record"], start, end)
        channel, start, end = channel[work], start[work], end[work]
        # By channel, records in order: a channel issues in order, so its starts ascend.
        order = np.argsort(channel.astype(np.int16), kind="stable")
        hbm_busy, hbm_spans = _busy(
            channel[order], start[order], end[order], hw.hbm.total_channels
        )
        hbm_intervals = _union(hbm_spans[0] * hbm_unit, hbm_spans[1] * hbm_unit)
        if sram is not None:
            lines = sram.timeline
            sram_start, sram_end = _per_record(
                len(step.sram.records), lines["record"], lines["start"], lines["end"]
            )
            sram_busy, sram_spans = _busy(lines["core"], lines["start"], lines["end"], hw.sram.cores)
            sram_intervals = _union(sram_spans[0] * sram_unit, sram_spans[1] * sram_unit)
            overlap = float(_overlap(hbm_intervals, sram_intervals) * clocks.unit_ns)
        else:
            sram_start = sram_end = np.zeros(0, dtype=np.int64)
            overlap = 0.0
        hbm_report = SubsystemReport(
            cycle_ns=float(clocks.hbm_ns),
            cycles=hbm.cycles,
            total_cycles=-(-end_units // hbm_unit),
            busy_cycles=_length(hbm_intervals) // hbm_unit,
            overlap_ns=overlap,
            busy=tuple(hbm_busy),
            # background power over the whole step: the stacks are on while SRAM-PIM works
            energy_pj=hbm_energy_report(hbm.commands, ns, hw.hbm),
        )
        sram_report = None
        if sram is not None:
            bound = self.sram.bound
            sram_report = SubsystemReport(
                cycle_ns=float(clocks.sram_ns),
                cycles=sram.cycles,
                total_cycles=-(-end_units // sram_unit),
                busy_cycles=_length(sram_intervals) // sram_unit,
                overlap_ns=overlap,
                busy=tuple(sram_busy),
                energy_pj=sram_energy_report(bound, sram.noc_busy, ns, hw, sram_energy),
            )
        tokens = {
            token: ("hbm", float(cycle * clocks.hbm_ns)) for token, cycle in self.hbm.raised.items()
        }
        if sram is not None:
            tokens |= {t: ("sram", float(c * clocks.sram_ns)) for t, c in sram.signals.items()}
        return MachineResult(
            hardware=hw.name,
            ctx=step.ctx,
            ns=ns,
            overlap_ns=overlap,
            hbm=hbm,
            sram=sram,
            hbm_report=hbm_report,
            sram_report=sram_report,
            tokens=dict(sorted(tokens.items())),
            step=step,
            hbm_start=hbm_start,
            hbm_end=hbm_end,
            sram_start=sram_start,
            sram_end=sram_end,
            clocks=clocks,
        )


def _check_raisers(step: MachineStep) -> None:
    """A wait for a token that no instruction of either stream raises: the deadlock is
    certain before anything runs (HBM-PIM waits for HBM-PIM tokens were checked when the
    step was made)."""
    hbm, sram = step.hbm.records, step.sram.records
    raised = set(hbm["n"][hbm["op"] == HbmOp.SIGNAL].tolist()) | set(
        sram["tok"][sram["op"] == SramOp.SIGNAL].tolist()
    )
    for side, records, op, field in (
        ("hbm", hbm, HbmOp.WAIT, "n"),
        ("sram", sram, SramOp.WAIT, "tok"),
    ):
        for i in np.flatnonzero(records["op"] == op).tolist():
            token = int(records[field][i])
            if token not in raised:
                waiter = (
                    f"{step.hbm_instruction(i)} (every channel)"
                    if side == "hbm"
                    else step.sram_instruction(i)
                )
                raise HpimError(
                    f"deadlock on {step.token_name(token)}: {waiter} waits for it, and no "
                    "instruction raises it"
                )


# -- intervals --------------------------------------------------------------------------------


def _per_record(
    count: int, record: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per record: the earliest of its entries' `starts` and the latest of their `ends`."""
    start = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    end = np.zeros(count, dtype=np.int64)
    np.minimum.at(start, record, starts)
    np.maximum.at(end, record, ends)
    start[start == np.iinfo(np.int64).max] = 0
    return start, end


def _union(
    start: np.ndarray, end: np.ndarray, ascending: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals [start, end) as disjoint sorted intervals (`ascending`: the
    starts are already in ascending order)."""
    keep = end > start
    start, end = start[keep], end[keep]
    if not len(start):
        return start, end
    if not ascending:
        order = np.argsort(start, kind="stable")
        start, end = start[order], end[order]
    end = np.maximum.accumulate(end)
    new = np.ones(len(start), dtype=bool)
    new[1:] = start[1:] > end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(start)) - 1
    return start[first], end[last]


def unit_part_intervals(
    unit: np.ndarray, part: np.ndarray, start: np.ndarray, end: np.ndarray, parts: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per unit (>= 0; a negative unit is no work) and part (< `parts`), the union of its
    intervals, as (unit, part, start, end) arrays. Each unit's starts ascend."""
    group = (unit.astype(np.int32) + 1) * parts + part
    # A stable sort by unit and part keeps each group's starts ascending (radix on 16 bits);
    # each group shifted past the one before, one union serves them all.
    key = group.astype(np.int16) if group.max(initial=0) < 2**15 else group
    order = np.argsort(key, kind="stable")
    group = group[order].astype(np.int64)
    span = int(end.max(initial=0)) + 1
    first, last = _union(start[order] + group * span, end[order] + group * span, ascending=True)
    group = first // span
    work = group >= parts
    group, first, last = group[work], first[work], last[work]
    return group // parts - 1, group % parts, first - group * span, last - group * span


def split_by_part(
    part: np.ndarray, start: np.ndarray, end: np.ndarray, weight: np.ndarray, parts: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Given each unit's intervals of work per part (`unit_part_intervals`) with the unit's
    `weight`: per part, its share (each instant split over the parts in proportion to the
    weight working for them) and its span (the union of its intervals); and the time some
    unit works. Shares sum to that time."""
    times = np.concatenate([start, end])
    order = np.argsort(times, kind="stable")
    gaps = np.diff(times[order]).astype(np.float64)
    steps = np.concatenate([weight, -weight])[order]
    # After each interval end in time order, the weight working in all and per part.
    total = np.cumsum(steps)[:-1]
    working = total > 0
    per_weight = np.zeros(len(gaps))
    per_weight[working] = gaps[working] / total[working]
    labels = np.concatenate([part, part])[order]
    share, span = np.zeros(parts), np.zeros(parts)
    for index in range(parts):
        share[index] = (np.cumsum(np.where(labels == index, steps, 0))[:-1] * per_weight).sum()
        span[index] = _length(_union(start[part == index], end[part == index]))
    return share, span, int(gaps[working].sum())


def _length(intervals: tuple[np.ndarray, np.ndarray]) -> int:
    start, end = intervals
    return int((end - start).sum())


def _overlap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> int:
    """The measure of the intersection of two unions (each disjoint and sorted)."""
    times = np.concatenate([a[0], a[1], b[0], b[1]])
    if not len(times):
        return 0
    in_a = np.concatenate([np.ones(len(a[0])), -np.ones(len(a[1])), np.zeros(len(b[0]) * 2)])
    in_b = np.concatenate([np.zeros(len(a[0]) * 2), np.ones(len(b[0])), -np.ones(len(b[1]))])
    order = np.argsort(times, kind="stable")
    times, in_a, in_b = times[order], np.cumsum(in_a[order]), np.cumsum(in_b[order])
    both = (in_a[:-1] > 0) & (in_b[:-1] > 0)
    return int((np.diff(times) * both).sum())


def _busy(
    unit: np.ndarray, start: np.ndarray, end: np.ndarray, units: int
) -> tuple[list[int], tuple[np.ndarray, np.ndarray]]:
    """Per unit (channel or core), the length of the union of its intervals; and those
    unions' intervals, all units together (fewer than the intervals given). The intervals
    come grouped by unit in ascending order, each unit's starts ascending."""
    if not len(start):
        return [0] * units, (start, end)
    # Shift each unit's intervals past the previous unit's, so one union serves them all.
    span = int(end.max()) + 1
    offset = unit.astype(np.int64) * span
    first, last = _union(start + offset, end + offset, ascending=True)
    owner = first // span
    busy = np.bincount(owner, weights=last - first, minlength=units).astype(np.int64)
    return busy.tolist(), (first - owner * span, last - owner * span)
