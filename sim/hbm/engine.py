"""Entry point of the HBM-PIM simulator: validation, engine choice, and the result.

`simulate(program, hw)` binds the program to a context length (`ctx`, when some count depends
on it), checks it against the hardware (every channel, bank, row, column and buffer slot in
range, in every iteration of a repeated section; every awaited token raised), unrolls its
sections, runs the fast engine (or the reference one) and returns an `HbmResult`: total and
per-channel cycles, command counts, energy and, on request, the command trace. Both engines
build their result with `collect_result`, so the two can only differ in the numbers they
compute.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    if engine == "fast":
        from hpim_ir.sim.hbm.fast import simulate_fast as run
    else:
        from hpim_ir.sim.hbm.reference import simulate_reference as run
    return run(expand_sections(program), hw, trace=trace, tokens=dict(tokens or {}))


def collect_result(
    hw,
    engine: str,
    channel_cycles: Sequence[int],
    counts: Sequence[int],
    by_controller: Sequence[int],
    trace_parts: list | None,
) -> HbmResult:
    """Build the result from per-channel completion cycles, per-`Cmd` counts and, when
    tracing, the `(channel, pieces)` parts of the trace in per-channel issue order."""
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
            records["per_ctx"] != 0,
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
            raise HpimError(
                f"{where(records, i, source)}: hbm.wait tok={n[i]} waits for a token that "
                "nothing raises before it (no earlier hbm.signal, and no other stream provides it)"
            )
