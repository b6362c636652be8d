"""Entry point of the HBM-PIM simulator: validation, engine choice, and the result.

`simulate(program, hw)` checks the program against the hardware (every channel, row, column
and buffer slot in range; every awaited token raised), runs the fast engine (or the reference
one) and returns an `HbmResult`: total and per-channel cycles, command counts, energy and,
on request, the command trace. Both engines build their result with `collect_result`, so
the two can only differ in the numbers they compute.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.energy import energy_report
from hpim_ir.sim.hbm.program import HbmOp, HbmProgram
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
) -> HbmResult:
    """Simulate an HBM-PIM instruction stream on `hw` (a `Hardware`).

    `engine` is `fast` or `reference` (same cycles, counts and trace; the reference is slow).
    `trace` records the command trace. `source` names the program in error messages.
    `tokens` maps tokens raised by other streams to the cycle they are raised at.
    """
    if engine not in ENGINES:
        raise HpimError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    validate_program(program, hw, source, tokens or {})
    if engine == "fast":
        from hpim_ir.sim.hbm.fast import simulate_fast as run
    else:
        from hpim_ir.sim.hbm.reference import simulate_reference as run
    return run(program, hw, trace=trace, tokens=dict(tokens or {}))


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
            for cmd in (Cmd.ACT_AB, Cmd.PRE_AB, Cmd.REF_AB)
        },
        energy_pj=energy_report(command_counts, cycles * hbm.timing.tCK_ns, hbm),
        trace=assemble_trace(trace_parts) if trace_parts is not None else None,
    )


def _op_name(op: int) -> str:
    return f"hbm.{HbmOp(op).name.lower()}"


def validate_program(
    program: HbmProgram, hw, source: str, tokens: Mapping[int, int]
) -> None:
    """Raise `HpimError` naming the first record (by source line) that the hardware cannot
    run: an unknown op, a channel, row, column or slot out of range, an empty macro, or a
    wait for a token nothing raises before it."""
    hbm = hw.hbm
    records = program.records
    op = records["op"].astype(np.int64)
    lo = records["ch_lo"].astype(np.int64)
    hi = records["ch_hi"].astype(np.int64)
    row = records["row"].astype(np.int64)
    col = records["col"].astype(np.int64)
    n = records["n"].astype(np.int64)
    channels = hbm.total_channels
    slots = hbm.global_buffer_slots
    columns = min(hbm.columns, slots)
    machine = f"{hw.name} has"

    def where(index: int) -> str:
        line = int(records["line"][index])
        return f"{source}:{line}" if line > 0 else f"{source}: record {index}"

    def channel_text(i: int) -> str:
        return f"ch={lo[i]}" if hi[i] == lo[i] + 1 else f"ch={lo[i]}:{hi[i]}"

    synced = (op == HbmOp.SIGNAL) | (op == HbmOp.WAIT)
    all_channels = (lo == 0) & (hi == -1)
    is_op = {kind: op == kind for kind in HbmOp}
    has_row = is_op[HbmOp.MAC_AB] | is_op[HbmOp.ACT_AB] | is_op[HbmOp.GEMV]
    checks = [
        (
            (op < 0) | (op > max(HbmOp)),
            lambda i: f"unknown HBM instruction kind {op[i]}",
        ),
        (
            ~synced & ~all_channels & ((lo < 0) | (hi <= lo) | (hi > channels)),
            lambda i: f"{_op_name(op[i])} {channel_text(i)} is out of range: "
            f"{machine} {channels} channels (0..{channels - 1})",
        ),
        (
            has_row & ((row < 0) | (row + np.where(is_op[HbmOp.GEMV], n, 1) > hbm.rows)),
            lambda i: f"{_op_name(op[i])} row={row[i]}"
            + (f" rows={n[i]}" if op[i] == HbmOp.GEMV else "")
            + f" is out of range: {machine} {hbm.rows} rows (0..{hbm.rows - 1})",
        ),
        (
            is_op[HbmOp.GEMV] & (n < 1),
            lambda i: f"hbm.gemv rows={n[i]}: a GEMV needs at least one row",
        ),
        (
            is_op[HbmOp.MAC_AB] & ((col < 0) | (col >= columns)),
            lambda i: f"hbm.mac_ab col={col[i]} is out of range: {machine} {hbm.columns} "
            f"columns and {slots} global-buffer slots (0..{columns - 1})",
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
        raise HpimError(f"{where(index)}: {message(index)}")
    raised = set(tokens)
    for i in np.flatnonzero(synced).tolist():
        if op[i] == HbmOp.SIGNAL:
            raised.add(int(n[i]))
        elif n[i] not in raised:
            raise HpimError(
                f"{where(i)}: hbm.wait tok={n[i]} waits for a token that nothing raises "
                "before it (no earlier hbm.signal, and no other stream provides it)"
            )
