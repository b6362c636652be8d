"""Binding a program to a context length and a machine.

`bind(program, hw, ctx)` evaluates every size at `ctx`, checks the records against the
machine (ranges, operands, sizes, tokens), expands each record into one instruction per
core of its range, checks every core's buffers (each operand live and of the right space,
transfers within their buffers, the live buffers within activation memory and the macros),
and computes each instruction's unit and cycles with the closed forms of `timing`. The
result, a `BoundProgram`, is all the event loop (`engine`) needs; everything here is
vectorized over records except the per-core buffer walk, which runs once per distinct
instruction sequence (cores running the same records share it).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.hardware.sram import KvPlacement
from hpim_ir.sim.sram.program import (
    COLLECTIVES,
    FORMS,
    MAX_SIZES,
    PIM_ALLOC_SIZES,
    Affine,
    SramOp,
    SramProgram,
    Space,
    VcuFn,
    smallest_size,
)
from hpim_ir.sim.sram.timing import (
    Unit,
    ceil_div,
    link_cycles,
    macro_write_cycles,
    mvm_cycles,
    pim_bytes,
    stream_mvm_offset,
    tcu_cycles,
    transpose_cycles,
    vcu_cycles,
)

UNITS: dict[SramOp, tuple[Unit, ...]] = {
    SramOp.LOAD: (Unit.TRANSFER,),
    SramOp.STORE: (Unit.TRANSFER,),
    SramOp.MACRO_WRITE: (Unit.PIM,),
    SramOp.MVM: (Unit.PIM,),
    SramOp.STREAM_MVM: (Unit.PIM, Unit.TRANSFER),
    SramOp.GEMM: (Unit.TCU,),
    SramOp.VCU: (Unit.VCU,),
    SramOp.TRANSPOSE: (Unit.TRANSPOSE,),
    SramOp.ALLGATHER: (Unit.TRANSFER,),
    SramOp.REDUCE: (Unit.TRANSFER,),
    SramOp.SCALAR: (Unit.SCU,),
}
"""The units an instruction occupies from dispatch to completion (the others: none)."""

LINK_OPS = (SramOp.LOAD, SramOp.STORE, SramOp.STREAM_MVM)
"""Instructions that use the link: their `cycles` count from the start of their transfer."""


def op_name(op: int, kind: int = 0) -> str:
    """`sram.load`, `sram.vcu.softmax`, ... as in the assembly."""
    name = f"sram.{SramOp(op).name.lower()}"
    return f"{name}.{VcuFn(kind).name.lower()}" if op == SramOp.VCU else name


@dataclass(frozen=True)
class BoundProgram:
    """A program at one context length on one machine. Instructions are grouped by core
    (core c's are `core_start[c]:core_start[c + 1]`, in program order); every per-instruction
    array is indexed the same way."""

    ctx: int
    source: str
    records: np.ndarray
    """The program's records (for messages: lines, ranges)."""
    record_cores: np.ndarray
    """(records, 2): each record's core range [lo, hi), "every core" resolved."""
    core_start: np.ndarray
    record: np.ndarray
    """The record each instruction comes from."""
    op: np.ndarray
    dst: np.ndarray
    src0: np.ndarray
    src1: np.ndarray
    units: np.ndarray
    """(instructions, 2): the units occupied, -1 for none."""
    cycles: np.ndarray
    """Cycles from dispatch to completion; for link instructions, from the start of the
    transfer to completion; for collectives, unused (the NoC decides)."""
    link_cycles: np.ndarray
    """Cycles the instruction holds the link (load, store, stream_mvm), else 0."""
    sizes: np.ndarray
    """(instructions, 3): the bound sizes, 0 where unused."""
    locate: Callable[[int], str]
    """Record -> where it is written, for messages."""

    def where(self, record: int) -> str:
        return self.locate(record)


def where(source: str, records: np.ndarray, index: int) -> str:
    """`source:line` of record `index`, or `source: record i` without a line."""
    line = int(records["line"][index])
    return f"{source}:{line}" if line > 0 else f"{source}: record {index}"


def bind(
    program: SramProgram,
    hw,
    ctx: int,
    source: str = "<program>",
    locate: Callable[[int], str] | None = None,
) -> BoundProgram:
    """Bind `program` to context length `ctx` on `hw` (a `Hardware` with `sram` and `link`);
    raise `HpimError` naming the first record the machine cannot run. Messages say where a
    record is with `locate(record)` (default: `where(source, ...)`, its line or index)."""
    sram = hw.sram
    if isinstance(ctx, bool) or not isinstance(ctx, (int, np.integer)) or ctx < 0:
        raise HpimError(f"context length {ctx!r}: must be a non-negative integer")
    records = program.records
    if locate is None:
        locate = lambda index: where(source, records, index)  # noqa: E731
    sizes = evaluate_sizes(records, int(ctx))
    _check_records(records, sizes, hw, int(ctx), locate)
    lo, hi = record_cores(records, sram.cores)

    counts = hi - lo
    record = np.repeat(np.arange(len(records)), counts)
    offsets = np.cumsum(counts) - counts
    core = np.repeat(lo, counts) + np.arange(len(record)) - np.repeat(offsets, counts)
    order = np.lexsort((record, core))
    record, core = record[order], core[order]
    core_start = np.searchsorted(core, np.arange(sram.cores + 1))

    op = records["op"].astype(np.int64)
    kind = records["kind"].astype(np.int64)
    cycles, links = _cycles(op, kind, sizes, hw)
    units = np.full((len(records), 2), -1, dtype=np.int64)
    for kind_op, used in UNITS.items():
        units[op == kind_op, : len(used)] = [int(u) for u in used]

    bound = BoundProgram(
        ctx=int(ctx),
        source=source,
        records=records,
        record_cores=np.stack([lo, hi], axis=1),
        core_start=core_start,
        record=record,
        op=op[record],
        dst=records["dst"].astype(np.int64)[record],
        src0=records["src0"].astype(np.int64)[record],
        src1=records["src1"].astype(np.int64)[record],
        units=units[record],
        cycles=cycles[record],
        link_cycles=links[record],
        sizes=sizes[record],
        locate=locate,
    )
    _check_buffers(bound, hw)
    return bound


def record_cores(records: np.ndarray, cores: int) -> tuple[np.ndarray, np.ndarray]:
    """Each record's half-open core range on a machine of `cores` cores (0, -1: every core)."""
    lo = records["core_lo"].astype(np.int64)
    hi = records["core_hi"].astype(np.int64)
    return lo, np.where((lo == 0) & (hi == -1), cores, hi)


def evaluate_sizes(records: np.ndarray, ctx: int) -> np.ndarray:
    """(records, 3) sizes at `ctx`: ceil((a * ctx + b) / d); d < 1 is reported later."""
    out = np.zeros((len(records), MAX_SIZES), dtype=np.int64)
    for i in range(MAX_SIZES):
        a = records[f"a{i}"].astype(np.int64)
        b = records[f"b{i}"].astype(np.int64)
        d = np.maximum(records[f"d{i}"].astype(np.int64), 1)
        out[:, i] = ceil_div(a * ctx + b, d)
    return out


def _size_names(op: int, kind: int) -> tuple[str, ...]:
    if op == SramOp.ALLOC and kind == Space.PIM:
        return PIM_ALLOC_SIZES
    return FORMS[SramOp(op)].sizes


def _check_records(
    records: np.ndarray, sizes: np.ndarray, hw, ctx: int, locate: Callable[[int], str]
) -> None:
    sram = hw.sram
    op = records["op"].astype(np.int64)
    kind = records["kind"].astype(np.int64)
    lo = records["core_lo"].astype(np.int64)
    hi = records["core_hi"].astype(np.int64)
    tok = records["tok"].astype(np.int64)
    known = op <= max(SramOp)
    safe_op = np.where(known, op, 0)
    is_op = {member: safe_op == member for member in SramOp}
    name = lambda i: op_name(op[i], kind[i] if kind[i] <= max(VcuFn) else 0)  # noqa: E731
    synced = is_op[SramOp.SIGNAL] | is_op[SramOp.WAIT]
    machine = f"{hw.name} has {sram.cores} cores"
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = [
        (~known, lambda i: f"unknown SRAM-PIM instruction kind {op[i]}"),
        (
            ~((lo == 0) & (hi == -1)) & ((lo < 0) | (hi <= lo) | (hi > sram.cores)),
            lambda i: f"{name(i)} cores={lo[i]}:{hi[i]} is out of range: {machine} "
            f"(0..{sram.cores - 1}; the range is half-open)",
        ),
        (
            is_op[SramOp.VCU] & (kind > max(VcuFn)),
            lambda i: f"sram.vcu function {kind[i]} is unknown "
            f"(0..{max(VcuFn)}: {', '.join(f.name.lower() for f in VcuFn)})",
        ),
        (
            is_op[SramOp.ALLOC] & (kind > max(Space)),
            lambda i: f"sram.alloc space {kind[i]} is unknown (0 am, 1 pim)",
        ),
        (
            ~is_op[SramOp.VCU] & ~is_op[SramOp.ALLOC] & (kind != 0),
            lambda i: f"{name(i)} kind={kind[i]}: only sram.vcu and sram.alloc have a kind",
        ),
        (synced & (tok < 0), lambda i: f"{name(i)} tok={tok[i]}: a token is at least 0"),
        (
            ~synced & (tok != -1),
            lambda i: f"{name(i)} tok={tok[i]}: only signal and wait take a token",
        ),
    ]
    for field in ("dst", "src0", "src1"):
        value = records[field].astype(np.int64)
        for member, form in FORMS.items():
            role = getattr(form, field)
            if role is None:
                bad = value != -1
                why = "must be -1 (no such operand)"
            elif role.endswith("?"):
                bad = value < -1
                why = "must be a buffer number (at least 0) or -1"
            else:
                bad = value < 0
                why = "is required: a buffer number, at least 0"
            checks.append(
                (
                    is_op[member] & bad,
                    lambda i,
                    field=field,
                    value=value,
                    why=why: f"{name(i)} {field}={value[i]}: {why}",
                )
            )
    divisors = np.stack([records[f"d{i}"] for i in range(MAX_SIZES)], axis=1).astype(np.int64)
    affine = lambda i, k: Affine(  # noqa: E731
        int(records[f"a{k}"][i]), int(records[f"b{k}"][i]), int(records[f"d{k}"][i])
    )
    for k in range(MAX_SIZES):
        checks.append(
            (
                divisors[:, k] < 1,
                lambda i, k=k: f"{name(i)}: size {k} has divisor d{k}={divisors[i, k]}; "
                "a divisor is at least 1",
            )
        )
    count = np.array([len(FORMS[member].sizes) for member in SramOp])[safe_op]
    count[is_op[SramOp.ALLOC] & (kind == Space.PIM)] = len(PIM_ALLOC_SIZES)
    used = known[:, None] & (np.arange(MAX_SIZES) < count[:, None])
    unset = np.stack(
        [
            (records[f"a{k}"] == 0) & (records[f"b{k}"] == 0) & (records[f"d{k}"] == 1)
            for k in range(MAX_SIZES)
        ],
        axis=1,
    )
    smallest = np.array([smallest_size(member) for member in SramOp])[safe_op]
    for k in range(MAX_SIZES):
        checks.append(
            (
                known & used[:, k] & (sizes[:, k] < smallest),
                lambda i, k=k: f"{name(i)} {_size_names(op[i], kind[i])[k]}={affine(i, k)} "
                f"is {sizes[i, k]} at ctx={ctx}: must be at least {smallest[i]}",
            )
        )
        checks.append(
            (
                known & ~used[:, k] & ~unset[:, k],
                lambda i, k=k: f"{name(i)} has no size {k} (a{k}, b{k}, d{k} must be 0, 0, 1); "
                f"its sizes are {', '.join(_size_names(op[i], kind[i])) or 'none'}",
            )
        )
    if sram.kv_cache is KvPlacement.SRAM:
        checks.append(
            (
                is_op[SramOp.STREAM_MVM],
                lambda i: "sram.stream_mvm streams the KV cache from HBM, but this machine "
                "keeps it in SRAM (sram.kv_cache = 'sram'); compile for it, or set "
                "kv_cache = 'hbm'",
            )
        )
    bad = [(int(np.argmax(mask)), message) for mask, message in checks if mask.any()]
    if bad:
        index, message = min(bad, key=lambda item: item[0])
        raise HpimError(f"{locate(index)}: {message(index)}")
    raisers: dict[int, int] = {}
    for i in np.flatnonzero(is_op[SramOp.SIGNAL]).tolist():
        first = raisers.setdefault(int(tok[i]), i)
        if first != i:
            raise HpimError(
                f"{locate(i)}: sram.signal tok={tok[i]}: the token is already "
                f"raised by {locate(first)} (a token is raised once per run)"
            )


def _cycles(
    op: np.ndarray, kind: np.ndarray, sizes: np.ndarray, hw
) -> tuple[np.ndarray, np.ndarray]:
    """Per record: cycles (see `BoundProgram.cycles`) and link cycles."""
    sram, link = hw.sram, hw.link
    cycles = np.zeros(len(op), dtype=np.int64)
    links = np.zeros(len(op), dtype=np.int64)
    s0, s1, s2 = sizes[:, 0], sizes[:, 1], sizes[:, 2]
    latency = link.latency_cycles(sram.clock_mhz)

    def at(member: SramOp) -> np.ndarray:
        return op == member

    for member in (SramOp.LOAD, SramOp.STORE):
        mine = at(member)
        links[mine] = link_cycles(s0[mine], link, sram.clock_mhz)
        cycles[mine] = latency + links[mine]
    mine = at(SramOp.STREAM_MVM)
    links[mine] = link_cycles(pim_bytes(s0[mine], s1[mine], sram.pim), link, sram.clock_mhz)
    rate = link.bytes_per_cycle(sram.clock_mhz)
    shapes = {(r, c) for r, c in zip(s0[mine].tolist(), s1[mine].tolist())}
    offset = {shape: stream_mvm_offset(*shape, sram.pim, rate, latency) for shape in shapes}
    cycles[mine] = [offset[(r, c)] for r, c in zip(s0[mine].tolist(), s1[mine].tolist())]
    mine = at(SramOp.MACRO_WRITE)
    cycles[mine] = macro_write_cycles(s0[mine], s1[mine], sram.pim)
    mine = at(SramOp.MVM)
    cycles[mine] = mvm_cycles(s0[mine], s1[mine], sram.pim)
    mine = at(SramOp.GEMM)
    cycles[mine] = tcu_cycles(s0[mine], s1[mine], s2[mine], sram.tcu)
    mine = at(SramOp.VCU)
    cycles[mine] = vcu_cycles(kind[mine], s0[mine], sram.vcu)
    mine = at(SramOp.TRANSPOSE)
    cycles[mine] = transpose_cycles(s0[mine], s1[mine], sram)
    mine = at(SramOp.SCALAR)
    cycles[mine] = s0[mine]  # the SCU is scalar: one operation per cycle
    return cycles, links


def _check_buffers(bound: BoundProgram, hw) -> None:
    """Walk each core's instructions: operands live and of their space, transfers within
    their buffers, live buffers within the activation memory and the macros. Cores with
    the same record sequence are walked once."""
    seen: set[bytes] = set()
    for c in range(hw.sram.cores):
        mine = bound.record[bound.core_start[c] : bound.core_start[c + 1]]
        key = mine.tobytes()
        if key not in seen:
            seen.add(key)
            _walk(bound, hw, c, bound.core_start[c], bound.core_start[c + 1])


def _walk(bound: BoundProgram, hw, core: int, first: int, last: int) -> None:
    sram = hw.sram
    records = bound.records
    capacity = {Space.AM: sram.activation_memory_bytes, Space.PIM: sram.pim.capacity_bytes}
    what = {Space.AM: "activation memory", Space.PIM: "PIM macros"}
    live: dict[
        int, tuple[Space, int, int, int, int]
    ] = {}  # buf -> space, bytes, rows, cols, record
    used = {Space.AM: 0, Space.PIM: 0}
    for i in range(first, last):
        r = int(bound.record[i])
        op = SramOp(int(bound.op[i]))
        s0, s1 = int(bound.sizes[i, 0]), int(bound.sizes[i, 1])
        here = f"{bound.where(r)}: core {core}"
        name = op_name(op, int(records["kind"][r]))
        if op == SramOp.ALLOC:
            buf = int(bound.dst[i])
            if buf in live:
                raise HpimError(
                    f"{here}: sram.alloc dst={buf}: buffer {buf} is already live "
                    f"(allocated at {bound.where(live[buf][4])})"
                )
            space = Space(int(records["kind"][r]))
            size = s0 if space == Space.AM else int(pim_bytes(s0, s1, sram.pim))
            live[buf] = (space, size, s0, s1, r)
            used[space] += size
            if used[space] > capacity[space]:
                buffers = ", ".join(
                    f"{b}: {entry[1]} B" for b, entry in live.items() if entry[0] == space
                )
                raise HpimError(
                    f"{here}: {what[space]} overflow at ctx={bound.ctx}: the live buffers need "
                    f"{used[space]} bytes, {capacity[space]} available ({buffers})"
                )
            continue
        if op == SramOp.FREE:
            buf = int(bound.dst[i])
            if buf not in live:
                raise HpimError(f"{here}: sram.free dst={buf}: buffer {buf} is not live")
            used[live[buf][0]] -= live.pop(buf)[1]
            continue
        form = FORMS[op]
        for field in ("dst", "src0", "src1"):
            buf = int(getattr(bound, field)[i])
            if buf < 0:
                continue
            space = Space.PIM if getattr(form, field).rstrip("?") == "pim" else Space.AM
            if buf not in live:
                raise HpimError(f"{here}: {name} {field}={buf}: buffer {buf} is not live")
            if live[buf][0] != space:
                raise HpimError(
                    f"{here}: {name} {field}={buf}: buffer {buf} is in {what[live[buf][0]]}; "
                    f"this operand must be in {what[space]}"
                )
        lo, hi = bound.record_cores[r]
        _check_extent(bound, i, op, name, here, live, int(hi - lo))


def _check_extent(
    bound, i: int, op: SramOp, name: str, here: str, live: dict, members: int
) -> None:
    """Transfers must fit their buffers; a PIM operand must hold the matrix used."""
    s0, s1 = int(bound.sizes[i, 0]), int(bound.sizes[i, 1])
    needs: list[tuple[str, int]] = []  # (field, bytes needed)
    if op in (SramOp.LOAD,):
        needs.append(("dst", s0))
    elif op in (SramOp.STORE,) or op in COLLECTIVES:
        needs.append(("src0", s0))
        if op == SramOp.ALLGATHER:
            needs.append(("dst", s0 * members))
        elif op == SramOp.REDUCE:
            needs.append(("dst", s0))
    for field, need in needs:
        buf = int(getattr(bound, field)[i])
        if buf >= 0 and live[buf][1] < need:
            raise HpimError(
                f"{here}: {name} {field}={buf} moves {need} bytes at ctx={bound.ctx}; "
                f"buffer {buf} has {live[buf][1]}"
            )
    if op in (SramOp.MACRO_WRITE, SramOp.MVM):
        buf = int((bound.dst if op == SramOp.MACRO_WRITE else bound.src1)[i])
        rows, cols = live[buf][2], live[buf][3]
        if s0 > rows or s1 > cols:
            field = "dst" if op == SramOp.MACRO_WRITE else "src1"
            raise HpimError(
                f"{here}: {name} {field}={buf} rows={s0} cols={s1} at ctx={bound.ctx}; "
                f"PIM buffer {buf} is {rows} x {cols}"
            )
