"""The SRAM-PIM engine: instruction-level timing of every core, the link and the NoC.

`SramEngine(hw).run(program, ctx, tokens)` simulates a whole program and returns an
`SramResult`. A central scheduler that interleaves this stream with the HBM-PIM one drives
an `SramSimulation` instead (`SramEngine.start`): `advance(until)` processes events up to a
cycle, `provide(token, cycle)` delivers a token raised by the other stream, `waiting` and
`raised` say which tokens each side needs and has produced. Tokens are in SRAM-PIM cycles.

The timing rules (`docs/sram-engine.md`):

- Issue. A core issues in order, one instruction per cycle, through a `pipeline_stages`-deep
  pipeline: its first instruction dispatches at cycle `pipeline_stages - 1` and each one at
  least a cycle after the previous; an instruction that must wait stalls the ones behind it.
  `alloc`/`free` are declarations and take no slot.
- Dependencies. An instruction dispatches once every buffer it reads has been written by
  the earlier instructions that write it (read after write), its `dst` is no longer read or
  written by earlier ones (write after read / write), and its units are free.
- Units. Each unit (`timing.Unit`) runs one instruction at a time, from dispatch to
  completion, for the cycles of its closed form; different units overlap.
- Link. One path per direction shared by all cores: a load (or a streamed MVM) holds the
  link from max(dispatch, link free) for ceil(bytes / bytes per cycle), and completes the
  link latency later (streamed MVMs: `timing.stream_mvm_offset`). Requests are served in
  the order they are made, which is cycle order: the engine processes link and NoC
  requests of all cores in one event queue ordered by cycle.
- NoC. See `noc.py`; a collective starts when its last participant dispatches it.
- Sync. `signal` raises its token when every core of its range has reached it and
  completed everything before it; `wait` holds issue until the token is raised.
"""

import heapq
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.sim.sram.bind import LINK_OPS, BoundProgram, bind, op_name
from hpim_ir.sim.sram.noc import Noc
from hpim_ir.sim.sram.program import COLLECTIVES, SramOp, SramProgram
from hpim_ir.sim.sram.timing import Unit

TIMELINE_DTYPE = np.dtype(
    [
        ("core", np.int16),
        ("record", np.int32),  # the record (instruction) of the program
        ("op", np.uint8),
        ("start", np.int64),  # dispatch cycle
        ("end", np.int64),  # completion cycle
        ("link_start", np.int64),  # load, store, stream_mvm: its transfer holds the link
        ("link_end", np.int64),  # from link_start to link_end; else -1, -1
    ]
)

# What an instruction does when the event loop reaches it.
_LOCAL, _GLOBAL, _DIRECTIVE, _WAIT, _SIGNAL, _BARRIER = range(6)
_ROLE = {op: _LOCAL for op in SramOp} | {
    SramOp.LOAD: _GLOBAL,
    SramOp.STORE: _GLOBAL,
    SramOp.STREAM_MVM: _GLOBAL,
    SramOp.ALLGATHER: _GLOBAL,
    SramOp.REDUCE: _GLOBAL,
    SramOp.ALLOC: _DIRECTIVE,
    SramOp.FREE: _DIRECTIVE,
    SramOp.WAIT: _WAIT,
    SramOp.SIGNAL: _SIGNAL,
    SramOp.BARRIER: _BARRIER,
}

TO_SRAM, TO_HBM = 0, 1
"""The link's two directions."""


def _present_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, ...]]:
    """Per instruction, those of `a[i]`, `b[i]` that are not -1 (no buffer, no unit); one
    tuple per distinct pair, shared."""
    if not len(a):
        return []
    a, b = a.astype(np.int64) + 1, b.astype(np.int64) + 1
    pairs, inverse = np.unique(a * (int(b.max()) + 1) + b, return_inverse=True)
    example = np.zeros(len(pairs), dtype=np.int64)  # an instruction with each pair
    example[inverse] = np.arange(len(a))
    table = [
        tuple(value - 1 for value in (x, y) if value > 0)
        for x, y in zip(a[example].tolist(), b[example].tolist())
    ]
    return [table[i] for i in inverse.tolist()]


@dataclass(frozen=True)
class SramResult:
    """What one simulation of an SRAM-PIM program produced."""

    hardware: str
    ctx: int
    clock_mhz: float
    cycles: int
    """Cycle at which the last instruction (of any core) completes."""
    core_cycles: tuple[int, ...]
    """Per core, the cycle at which its last instruction completes (0 if it had none)."""
    unit_busy: dict[str, tuple[int, ...]]
    """Per unit (`Unit` name), per core: cycles the unit was occupied."""
    instructions: tuple[int, ...]
    """Per core: instructions issued (declarations excluded)."""
    signals: dict[int, int]
    """Token -> the cycle this stream raised it."""
    link_busy: dict[str, int]
    """Per direction (`to_sram`, `to_hbm`): cycles the link was transferring."""
    noc_busy: int
    """Link-cycles of NoC transfers (a transfer over h links for s cycles counts h * s)."""
    timeline: np.ndarray | None
    """Every instruction's dispatch and completion (`TIMELINE_DTYPE`), when requested."""

    @property
    def ns(self) -> float:
        return self.cycles * 1000 / self.clock_mhz

    def as_dict(self) -> dict:
        """The result as plain JSON-able data (without the timeline)."""
        return {
            "hardware": self.hardware,
            "ctx": self.ctx,
            "clock_mhz": self.clock_mhz,
            "cycles": self.cycles,
            "ns": self.ns,
            "core_cycles": list(self.core_cycles),
            "unit_busy": {unit: list(busy) for unit, busy in self.unit_busy.items()},
            "instructions": list(self.instructions),
            "signals": {str(token): cycle for token, cycle in self.signals.items()},
            "link_busy": self.link_busy,
            "noc_busy": self.noc_busy,
        }


class SramEngine:
    """Simulates SRAM-PIM programs on one machine (`hw.sram`, `hw.link`)."""

    def __init__(self, hw):
        if getattr(hw, "sram", None) is None or getattr(hw, "link", None) is None:
            missing = "[sram]" if getattr(hw, "sram", None) is None else "[link]"
            raise HpimError(f"hardware {hw.name!r} has no SRAM-PIM subsystem ({missing} section)")
        self.hw = hw

    def bind(
        self,
        program: SramProgram,
        ctx: int,
        source: str = "<program>",
        where: Callable[[int], str] | None = None,
    ) -> BoundProgram:
        """The program at context length `ctx`, checked against the machine; messages name
        a record by `where(record)` (default: its line, or its index)."""
        return bind(program, self.hw, ctx, source, where)

    def start(
        self,
        program: SramProgram,
        ctx: int,
        tokens: Mapping[int, int] | None = None,
        source: str = "<program>",
        where: Callable[[int], str] | None = None,
    ) -> "SramSimulation":
        """A simulation to drive step by step; `tokens` are tokens already raised by the
        other stream (token -> SRAM-PIM cycle)."""
        return SramSimulation(self.bind(program, ctx, source, where), self.hw, tokens or {})

    def run(
        self,
        program: SramProgram,
        ctx: int,
        tokens: Mapping[int, int] | None = None,
        source: str = "<program>",
        timeline: bool = False,
    ) -> SramResult:
        """Simulate `program` at context length `ctx` to the end. Every awaited token must be
        raised by a signal of the program or be given in `tokens`."""
        bound = self.bind(program, ctx, source)
        records = bound.records
        op = records["op"]
        raised = set(records["tok"][op == SramOp.SIGNAL].tolist()) | set(tokens or {})
        for i in np.flatnonzero(op == SramOp.WAIT).tolist():
            if int(records["tok"][i]) not in raised:
                raise HpimError(
                    f"{bound.where(i)}: sram.wait tok={records['tok'][i]} waits for a token "
                    "that nothing raises (no sram.signal, and no other stream provides it)"
                )
        simulation = SramSimulation(bound, self.hw, tokens or {})
        simulation.advance()
        return simulation.result(timeline)


class SramSimulation:
    """One program in flight. Cores run ahead on their own until they reach an instruction
    that shares something (the link, the NoC) or waits (a token, a collective); those go
    through one event queue ordered by cycle, so shared resources are granted in cycle
    order."""

    def __init__(self, bound: BoundProgram, hw, tokens: Mapping[int, int]):
        sram = hw.sram
        self.bound = bound
        self.hw = hw
        records = bound.records
        self.cores = sram.cores
        self.roles = [_ROLE[op] for op in bound.op.tolist()]  # IntEnum keys match ints
        self.ops = bound.op.tolist()
        self.record_of = bound.record.tolist()
        self.dst = bound.dst.tolist()
        # Per instruction, the buffers it reads and the units it occupies (no -1 entries):
        # the loops over them are the engine's innermost.
        self.reads = _present_pairs(bound.src0, bound.src1)
        self.units_of = _present_pairs(bound.units[:, 0], bound.units[:, 1])
        self.cycles = bound.cycles.tolist()
        self.link_hold = bound.link_cycles.tolist()
        self.nbytes = bound.sizes[:, 0].tolist()
        self.rec_tok = records["tok"].tolist()
        self.rec_lo = bound.record_cores[:, 0].tolist()
        self.rec_hi = bound.record_cores[:, 1].tolist()

        n = len(self.ops)
        self.start_at = [0] * n
        self.end_at = [0] * n
        self.link_at = [-1] * n
        self.pc = bound.core_start[:-1].tolist()
        self.stop = bound.core_start[1:].tolist()
        self.last = [sram.pipeline_stages - 2] * self.cores  # so the first dispatches at stages - 1
        self.unit_free = [[0] * len(Unit) for _ in range(self.cores)]
        self.ready: list[dict[int, int]] = [{} for _ in range(self.cores)]
        self.read_done: list[dict[int, int]] = [{} for _ in range(self.cores)]
        self.done = [0] * self.cores

        self.tokens: dict[int, int] = dict(tokens)
        """Tokens raised by the other stream (provided)."""
        self.raised: dict[int, int] = {}
        """Tokens raised by this stream's signals."""
        self.waiting: dict[int, list[int]] = {}
        """Token -> cores whose `wait` for it is pending."""
        self.gathering: dict[int, list[tuple[int, int]]] = {}
        """Collective record -> (core, instruction) of the members that have reached it."""
        self.signalling: dict[int, list[int]] = {}
        """Signal record -> the cycles at which its cores have reached it so far."""
        self.link_free = [0, 0]
        self.link_busy = [0, 0]
        self.noc = Noc(sram)
        self.heap: list[tuple[int, int]] = []
        self.now = 0
        self.runnable: deque[int] = deque(range(self.cores))

    # -- driving ---------------------------------------------------------------------------

    def provide(self, token: int, cycle: int) -> None:
        """Token `token` was raised by the other stream at `cycle` (SRAM-PIM cycles)."""
        if token in self.tokens or token in self.raised:
            raise HpimError(f"token {token} is raised twice (provided at cycle {cycle})")
        self.tokens[token] = cycle
        self.runnable.extend(self.waiting.pop(token, ()))

    def advance(self, until: int | None = None) -> bool:
        """Process every event at or before cycle `until` (None: all that can be); True
        once every core has finished. Events later than `until` stay queued, so a token
        provided afterwards may still be at any cycle >= `until`."""
        while True:
            while self.runnable:
                self._run(self.runnable.popleft())
            if not self.heap or (until is not None and self.heap[0][0] > until):
                break
            cycle, core = heapq.heappop(self.heap)
            self.now = cycle
            self._shared(core, cycle)
        return self.finished

    def advance_until_raised(self, token: int) -> int | None:
        """Process events one event cycle at a time until this stream raises `token`; the
        cycle it raised it at, None if no event is left before. Stops after the first event
        cycle that raises it: nothing later has run."""
        self.advance(self.now)  # what is runnable now, and the events of this cycle
        while token not in self.raised:
            upcoming = self.next_event
            if upcoming is None:
                return None
            self.advance(upcoming)
        return self.raised[token]

    @property
    def finished(self) -> bool:
        return not self.heap and all(pc == stop for pc, stop in zip(self.pc, self.stop))

    @property
    def next_event(self) -> int | None:
        """The cycle of the earliest queued event (None: none is queued). `advance(now)`
        then `advance(next_event)` processes the program one event cycle at a time."""
        return self.heap[0][0] if self.heap else None

    def stalls(self) -> list[tuple[int, int, int | None]]:
        """The cores that cannot go on, by core: (core, the record they stop at, the token
        it waits for, or None at a collective some member has not reached)."""
        stuck = [
            (core, self.record_of[self.pc[core]], token)
            for token, cores in self.waiting.items()
            for core in cores
        ]
        stuck += [
            (core, record, None) for record, arrived in self.gathering.items() for core, _ in arrived
        ]
        return sorted(stuck)

    def reached(self, core: int, record: int) -> bool:
        """Whether `core` has issued its instruction of `record` (or `record` is not its)."""
        lo, hi = self.rec_lo[record], self.rec_hi[record]
        if not lo <= core < hi:
            return True
        i = self.pc[core]
        return i >= self.stop[core] or self.record_of[i] > record

    def absent(self, record: int) -> list[int]:
        """The members of collective `record` that have not reached it."""
        present = {core for core, _ in self.gathering.get(record, ())}
        return [c for c in range(self.rec_lo[record], self.rec_hi[record]) if c not in present]

    def result(self, timeline: bool = False) -> SramResult:
        """The result of a finished simulation; `HpimError` naming every stuck core if it
        cannot finish (a wait no token satisfies, or a collective a core never reaches)."""
        if self.heap or self.runnable:
            raise HpimError(
                f"the SRAM-PIM simulation has not finished: advance it past cycle {self.now} first"
            )
        if not self.finished:
            raise HpimError(self._stuck())
        bound = self.bound
        start = np.array(self.start_at, dtype=np.int64)
        end = np.array(self.end_at, dtype=np.int64)
        core = np.repeat(np.arange(self.cores), np.diff(bound.core_start))
        busy = np.zeros((len(Unit), self.cores), dtype=np.int64)
        for column in (0, 1):
            unit = bound.units[:, column]
            used = unit >= 0
            np.add.at(busy, (unit[used], core[used]), (end - start)[used])
        core_cycles = np.zeros(self.cores, dtype=np.int64)
        np.maximum.at(core_cycles, core, end)
        directive = np.isin(bound.op, (SramOp.ALLOC, SramOp.FREE))
        trace = None
        if timeline:
            trace = np.empty(len(start), dtype=TIMELINE_DTYPE)
            trace["core"], trace["record"], trace["op"] = core, bound.record, bound.op
            trace["start"], trace["end"] = start, end
            link = np.array(self.link_at, dtype=np.int64)
            trace["link_start"] = link
            trace["link_end"] = np.where(link >= 0, link + bound.link_cycles, -1)
        return SramResult(
            hardware=self.hw.name,
            ctx=bound.ctx,
            clock_mhz=self.hw.sram.clock_mhz,
            cycles=int(core_cycles.max(initial=0)),
            core_cycles=tuple(core_cycles.tolist()),
            unit_busy={unit.name: tuple(busy[unit].tolist()) for unit in Unit},
            instructions=tuple(np.bincount(core[~directive], minlength=self.cores).tolist()),
            signals=dict(self.raised),
            link_busy={"to_sram": self.link_busy[TO_SRAM], "to_hbm": self.link_busy[TO_HBM]},
            noc_busy=self.noc.busy_cycles,
            timeline=trace,
        )

    # -- one core --------------------------------------------------------------------------

    def _ready_at(self, core: int, i: int) -> int:
        """The earliest dispatch of instruction `i` from the core's own state."""
        t = self.last[core] + 1
        ready = self.ready[core]
        for buf in self.reads[i]:
            at = ready.get(buf, 0)
            if at > t:
                t = at
        buf = self.dst[i]
        if buf >= 0:
            t = max(t, ready.get(buf, 0), self.read_done[core].get(buf, 0))
        free = self.unit_free[core]
        for unit in self.units_of[i]:
            if free[unit] > t:
                t = free[unit]
        return t

    def _run(self, core: int) -> None:
        """Issue the core's instructions until one needs the event queue or must wait."""
        roles = self.roles
        i, stop = self.pc[core], self.stop[core]
        while i < stop:
            role = roles[i]
            if role == _DIRECTIVE:
                self.start_at[i] = self.end_at[i] = self.last[core] + 1
                i += 1
                continue
            t = self._ready_at(core, i)
            if role == _LOCAL:
                self._retire(core, i, t, t + self.cycles[i])
            elif role == _GLOBAL:
                if t < self.now:
                    raise HpimError(
                        f"{self.bound.where(self.record_of[i])}: core {core} would issue at cycle "
                        f"{t}, before cycle {self.now} that the simulation has passed: a token "
                        "was provided after advancing beyond the cycle it was raised at"
                    )
                self.pc[core] = i
                heapq.heappush(self.heap, (t, core))
                return
            elif role == _WAIT:
                token = self.rec_tok[self.record_of[i]]
                when = self.tokens.get(token, self.raised.get(token))
                if when is None:
                    self.pc[core] = i
                    self.waiting.setdefault(token, []).append(core)
                    return
                self._retire(core, i, max(t, when), max(t, when))
            elif role == _BARRIER:
                t = max(t, self.done[core])
                self._retire(core, i, t, t)
            else:  # _SIGNAL
                self._retire(core, i, t, t)
                self._signal(self.record_of[i], max(t, self.done[core]))
            i += 1
        self.pc[core] = i

    def _retire(self, core: int, i: int, start: int, end: int) -> None:
        """Instruction `i` dispatches at `start` and completes at `end`."""
        self.start_at[i], self.end_at[i] = start, end
        self.last[core] = start
        free = self.unit_free[core]
        for unit in self.units_of[i]:
            free[unit] = end
        if self.dst[i] >= 0:
            self.ready[core][self.dst[i]] = end
        read_done = self.read_done[core]
        for buf in self.reads[i]:
            if read_done.get(buf, 0) < end:
                read_done[buf] = end
        if end > self.done[core]:
            self.done[core] = end

    def _signal(self, record: int, cycle: int) -> None:
        arrived = self.signalling.setdefault(record, [])
        arrived.append(cycle)
        if len(arrived) == self.rec_hi[record] - self.rec_lo[record]:
            token = self.rec_tok[record]
            if token in self.tokens:
                raise HpimError(
                    f"{self.bound.where(record)}: sram.signal tok={token}: the token was "
                    "already provided by the other stream"
                )
            self.raised[token] = max(arrived)
            self.runnable.extend(self.waiting.pop(token, ()))

    # -- shared resources ------------------------------------------------------------------

    def _shared(self, core: int, t: int) -> None:
        """The core's next instruction (link or NoC) dispatches at cycle `t` = now."""
        i = self.pc[core]
        op = self.ops[i]
        if op in LINK_OPS:
            direction = TO_HBM if op == SramOp.STORE else TO_SRAM
            hold = self.link_hold[i]
            # An empty streamed product moves nothing: it neither waits for nor holds the link.
            begin = max(t, self.link_free[direction]) if hold else t
            self.link_at[i] = begin
            if hold:
                self.link_free[direction] = begin + hold
            self.link_busy[direction] += hold
            self._retire(core, i, t, begin + self.cycles[i])
            self.pc[core] = i + 1
            self.runnable.append(core)
            return
        assert op in COLLECTIVES
        record = self.record_of[i]
        arrived = self.gathering.setdefault(record, [])
        arrived.append((core, i))
        members = range(self.rec_lo[record], self.rec_hi[record])
        if len(arrived) < len(members):
            return
        del self.gathering[record]
        end = self.noc.collective(SramOp(op), members, self.nbytes[i], t)
        for member, j in arrived:
            self._retire(member, j, t, end)
            self.pc[member] = j + 1
            self.runnable.append(member)

    # -- diagnostics -----------------------------------------------------------------------

    def _stuck(self) -> str:
        bound = self.bound
        signals = {
            self.rec_tok[r]: r
            for r in np.flatnonzero(bound.records["op"] == SramOp.SIGNAL).tolist()
        }
        lines = []
        for token, cores in sorted(self.waiting.items()):
            raiser = signals.get(token)
            why = (
                f"its sram.signal at {bound.where(raiser)} is never reached by every core "
                f"of cores={self.rec_lo[raiser]}:{self.rec_hi[raiser]}"
                if raiser is not None
                else "nothing raises it"
            )
            for core in cores:
                at = bound.where(self.record_of[self.pc[core]])
                lines.append(f"core {core} waits at {at} (sram.wait tok={token}): {why}")
        for record, arrived in sorted(self.gathering.items()):
            present = {core for core, _ in arrived}
            absent = [
                c for c in range(self.rec_lo[record], self.rec_hi[record]) if c not in present
            ]
            name = op_name(bound.records["op"][record])
            lines.append(
                f"cores {sorted(present)} wait at {bound.where(record)} ({name} "
                f"cores={self.rec_lo[record]}:{self.rec_hi[record]}) for cores {absent}"
            )
        return "the SRAM-PIM program cannot finish (deadlock): " + "; ".join(lines)
