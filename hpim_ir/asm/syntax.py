"""The fields of each HBM-PIM instruction and how they fill an `HbmProgram` record.

One table, `HBM_INSTRUCTIONS`, says for every `HbmOp` how it is written (`hbm.gemv ch=A:B row=R
rows=N cols=K`), which record column each field fills, the smallest value each field takes, and
which count (if any) may depend on the context length (`ctx=A/D`, then an optional `off=Q`,
last on the line). The assembly reader (fast path and lark path), the writer and the `hbm_isa`
dialect all work from it, so the three cannot disagree on a field; the dialect's property names
are the field names (`per_ctx`, `ctx_div` for `ctx=A/D`, `ctx_off` for `off=Q`). The `.section`
directive's fields are here too. This module imports no xDSL and no lark: `hpim run-isa` loads
it on every run.

SRAM-PIM lines take their fields from the `sram_isa` dialect (which reads the simulator's
`FORMS`); what is theirs alone is spelled here: sizes (`size_text`, `size_of_text`) and the
`part=` field every instruction may carry.
"""

import re
from dataclasses import dataclass
from enum import Enum

from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.program import RECORD_DTYPE, HbmOp
from hpim_ir.sim.sram.program import Affine

MAX_VALUE = 2**31 - 2
"""The largest value of any field (and channel number). Records hold int32, and a channel C
is stored as the range [C, C + 1), whose end must fit too; a range `A:B` may end at
`MAX_VALUE + 1`."""

NO_CHANNEL = (-1, -1)
"""The channel columns of `signal` / `wait`, which belong to no channel."""
ALL_CHANNELS = (0, -1)
"""The channel columns of `hbm.barrier` without `ch=`: every channel of the machine."""

UNSET = {"row": -1, "col": -1, "n": 1, "bank": -1, "per_ctx": 0, "ctx_div": 1, "ctx_off": 0}
"""What a record column holds when the instruction has no field for it (program.py)."""

CONTEXT_FIELDS = ("per_ctx", "ctx_div")
"""`ctx=A/D` as values: the count grows by ceil(A * ctx / D); A and D at least 1."""

CONTEXT_OFFSET = "ctx_off"
"""`off=Q` after `ctx=A/D` as a value: the count grows by max(0, ceil((A * ctx + Q) / D))
instead (an exact share of a count, `hpim_ir.sim.hbm.program.split_count`). Never 0: no
offset is written by leaving `off=` out, so every count has one spelling."""


class ChannelForm(Enum):
    """How an instruction names its channels."""

    NONE = "none"
    """No channel (`signal`, `wait`)."""
    ONE = "one"
    """Exactly one channel, `ch=C` (raw commands)."""
    OPTIONAL = "optional"
    """One channel, or every channel when `ch=` is left out (`barrier`)."""
    RANGE = "range"
    """A half-open channel range `ch=A:B`, or one channel `ch=C` (macro-instructions)."""


@dataclass(frozen=True)
class Field:
    """A `name=value` field after the channel: where its value goes and its smallest value."""

    name: str
    column: str
    minimum: int


ROW = Field("row", "row", 0)
COL = Field("col", "col", 0)
ROWS = Field("rows", "n", 1)
COLS = Field("cols", "col", 1)
BURSTS = Field("n", "n", 1)
TOKEN = Field("tok", "n", 0)
BANK = Field("bank", "bank", 0)


@dataclass(frozen=True)
class InstructionSyntax:
    """One instruction kind: its mnemonic, channel form and fields in the order written;
    `count` is the field an optional `ctx=A/D` adds to (which may then be 0), if any."""

    op: HbmOp
    mnemonic: str
    channel: ChannelForm
    fields: tuple[Field, ...]
    count: Field | None = None


HBM_INSTRUCTIONS: dict[HbmOp, InstructionSyntax] = {
    syntax.op: syntax
    for syntax in (
        InstructionSyntax(HbmOp.WR_GB, "hbm.wr_gb", ChannelForm.ONE, (COL,)),
        InstructionSyntax(HbmOp.MAC_AB, "hbm.mac_ab", ChannelForm.ONE, (ROW, COL)),
        InstructionSyntax(HbmOp.ACT_AB, "hbm.act_ab", ChannelForm.ONE, (ROW,)),
        InstructionSyntax(HbmOp.PRE_AB, "hbm.pre_ab", ChannelForm.ONE, ()),
        InstructionSyntax(HbmOp.RD_OUT, "hbm.rd_out", ChannelForm.ONE, ()),
        InstructionSyntax(HbmOp.BARRIER, "hbm.barrier", ChannelForm.OPTIONAL, ()),
        InstructionSyntax(HbmOp.SIGNAL, "hbm.signal", ChannelForm.NONE, (TOKEN,)),
        InstructionSyntax(HbmOp.WAIT, "hbm.wait", ChannelForm.NONE, (TOKEN,)),
        InstructionSyntax(HbmOp.GEMV, "hbm.gemv", ChannelForm.RANGE, (ROW, ROWS, COLS), ROWS),
        InstructionSyntax(HbmOp.LOAD_GB, "hbm.load_gb", ChannelForm.RANGE, (COLS,)),
        InstructionSyntax(HbmOp.READOUT, "hbm.readout", ChannelForm.RANGE, (BURSTS,), BURSTS),
        InstructionSyntax(HbmOp.ACT, "hbm.act", ChannelForm.ONE, (BANK, ROW)),
        InstructionSyntax(HbmOp.PRE, "hbm.pre", ChannelForm.ONE, (BANK,)),
        InstructionSyntax(HbmOp.RD, "hbm.rd", ChannelForm.ONE, (BANK, ROW, COL)),
        InstructionSyntax(HbmOp.WR, "hbm.wr", ChannelForm.ONE, (BANK, ROW, COL)),
        InstructionSyntax(HbmOp.RDA, "hbm.rda", ChannelForm.ONE, (BANK, ROW, COL)),
        InstructionSyntax(HbmOp.WRA, "hbm.wra", ChannelForm.ONE, (BANK, ROW, COL)),
        InstructionSyntax(HbmOp.READ, "hbm.read", ChannelForm.RANGE, (ROW, ROWS, COLS), ROWS),
        InstructionSyntax(HbmOp.WRITE, "hbm.write", ChannelForm.RANGE, (ROW, ROWS, COLS), ROWS),
    )
}

HBM_BY_MNEMONIC: dict[str, InstructionSyntax] = {s.mnemonic: s for s in HBM_INSTRUCTIONS.values()}

Channels = tuple[int, int] | None
"""A half-open channel range [lo, hi), or None for no channel / every channel."""


def value_problem(name: str, value: int, minimum: int = 0) -> str | None:
    """Why `value` cannot be field `name`, or None if it can."""
    if value < minimum:
        return f"{name} must be {'non-negative' if minimum == 0 else f'at least {minimum}'}, got {value}"
    if value > MAX_VALUE:
        return f"{name} must be at most {MAX_VALUE}, got {value}"
    return None


def range_problem(
    lo: int, hi: int, spelling: str = "{}:{}", field: str = "ch", noun: str = "channel"
) -> str | None:
    """Why [lo, hi) is not a channel range (or, with `field="cores", noun="core"`, a core
    range), or None; `spelling` writes the range in messages."""
    if problem := value_problem(field, lo):
        return problem
    if hi <= lo:
        return f"{noun} range {spelling.format(lo, hi)} is empty"
    if hi > MAX_VALUE + 1:
        return f"{noun} range {spelling.format(lo, hi)} must end at most at {MAX_VALUE + 1}"
    return None


def instruction_problem(
    syntax: InstructionSyntax, channels: Channels, values: dict[str, int], spelling: str = "{}:{}"
) -> str | None:
    """The first reason these fields do not make an instruction, or None if they do.
    `values` holds `per_ctx` and `ctx_div` when the count depends on the context, and
    `ctx_off` when that term has an offset."""
    if channels is not None:
        problem = (
            range_problem(*channels, spelling)
            if syntax.channel is ChannelForm.RANGE
            else value_problem("ch", channels[0])
        )
        if problem:
            return problem
    context = CONTEXT_FIELDS[0] in values
    for field in syntax.fields:
        # With ctx= the count may be 0 (a cache read that only grows with the context).
        minimum = 0 if context and field == syntax.count else field.minimum
        problem = value_problem(field.name, values[field.name], minimum)
        if problem:
            return problem
    if context:
        if syntax.count is None:
            return "takes no ctx="
        for name in CONTEXT_FIELDS:
            if problem := value_problem(name, values[name], 1):
                return problem
    if CONTEXT_OFFSET in values:
        return offset_problem(values[CONTEXT_OFFSET], context)
    return None


def offset_problem(offset: int, context: bool) -> str | None:
    """Why `offset` cannot be a count's `ctx_off` (`context`: the count has a `ctx=` term)."""
    if not context:
        return f"{CONTEXT_OFFSET} {offset} needs a ctx= term (per_ctx and ctx_div)"
    if offset == 0:
        return f"{CONTEXT_OFFSET} must not be 0 (a count without an offset leaves it out)"
    if abs(offset) > MAX_VALUE:
        return f"{CONTEXT_OFFSET} must be within -{MAX_VALUE}..{MAX_VALUE}, got {offset}"
    return None


def record_of_fields(
    syntax: InstructionSyntax, channels: Channels, values: dict[str, int], line: int = 0
) -> tuple[int, ...]:
    """The record (`RECORD_DTYPE` order) of one instruction given its fields (and `per_ctx`,
    `ctx_div`, `ctx_off` in `values` when its count depends on the context)."""
    columns = dict(UNSET)
    for field in syntax.fields:
        columns[field.column] = values[field.name]
    for name in (*CONTEXT_FIELDS, CONTEXT_OFFSET):
        columns[name] = values.get(name, UNSET[name])
    if channels is None:
        channels = NO_CHANNEL if syntax.channel is ChannelForm.NONE else ALL_CHANNELS
    columns["ch_lo"], columns["ch_hi"] = channels
    columns["op"], columns["line"] = syntax.op, line
    return tuple(columns[name] for name in RECORD_DTYPE.names)


def fields_of_record(record: tuple, index: int) -> tuple[InstructionSyntax, Channels, dict[str, int]]:
    """The inverse of `record_of_fields`: an instruction's syntax, channels and field values.

    `record` is record number `index` of a program, as a tuple (`records.tolist()` gives
    them). Raises HpimError naming the record when it is not a valid instruction: an unknown
    op, a raw command not on exactly one channel, a value out of range, or a context term on
    an instruction without a count, an offset without one. Columns the instruction has no
    field for are not read.
    """
    try:
        syntax = HBM_INSTRUCTIONS[HbmOp(record[0])]
    except ValueError:
        raise HpimError(f"record {index}: unknown instruction kind {record[0]}") from None
    lo, hi = record[1], record[2]
    channels: Channels = (lo, hi)
    if syntax.channel is ChannelForm.NONE or (
        syntax.channel is ChannelForm.OPTIONAL and channels == ALL_CHANNELS
    ):
        channels = None
    elif syntax.channel is not ChannelForm.RANGE and hi != lo + 1:
        raise HpimError(f"record {index} ({syntax.mnemonic}): takes one channel, not {lo}:{hi}")
    values = {field.name: record[_COLUMN_INDEX[field.column]] for field in syntax.fields}
    context = {name: record[_COLUMN_INDEX[name]] for name in CONTEXT_FIELDS}
    if context != {name: UNSET[name] for name in CONTEXT_FIELDS}:
        values.update(context)
    if record[_COLUMN_INDEX[CONTEXT_OFFSET]] != UNSET[CONTEXT_OFFSET]:
        values[CONTEXT_OFFSET] = record[_COLUMN_INDEX[CONTEXT_OFFSET]]
    problem = instruction_problem(syntax, channels, values)
    if problem:
        raise HpimError(f"record {index} ({syntax.mnemonic}): {problem}")
    return syntax, channels, values


_COLUMN_INDEX = {name: i for i, name in enumerate(RECORD_DTYPE.names)}


# --- the .section directive ----------------------------------------------------------------

SECTION_DIRECTIVE = ".section"
SECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
"""What a section name may be: it is written bare on the directive line."""
SECTION_FIELDS = (("repeat", 1), ("row_stride", 0))
"""The directive's optional fields after the name, in order, with their smallest values."""


def section_problem(name: str | None, repeat: int | None, row_stride: int | None) -> str | None:
    """Why these cannot be a section's name, repeat and row_stride (None: not given)."""
    if name is not None and not SECTION_NAME.fullmatch(name):
        return (
            f"section name {name!r} must be a letter or '_' followed by letters, digits, "
            "'_', '.' or '-'"
        )
    for (field, minimum), value in zip(SECTION_FIELDS, (repeat, row_stride)):
        if value is not None and (problem := value_problem(field, value, minimum)):
            return problem
    return None


def section_line(name: str | None, repeat: int | None, row_stride: int | None) -> str:
    """The directive line of a section, canonical spelling."""
    words = [SECTION_DIRECTIVE] + ([name] if name is not None else [])
    words += [
        f"{field}={value}"
        for (field, _), value in zip(SECTION_FIELDS, (repeat, row_stride))
        if value is not None
    ]
    return " ".join(words)


# --- SRAM-PIM sizes and parts --------------------------------------------------------------

_SIZE = re.compile(r"(?:ceildiv\()?(?:([0-9]+)\*)?ctx(?:([+-][0-9]+))?(?:,([0-9]+)\))?")


def size_text(size: Affine) -> str:
    """How a size is written on an assembly line: `Affine`'s text without blanks (`64`,
    `ctx+1`, `256*ctx+256`, `ceildiv(ctx+1,8)`), one spelling per size."""
    return str(size).replace(" ", "")


def size_of_text(text: str) -> Affine:
    """The size written `text` (what the grammar's SIZE matches). ValueError says why it is
    not a size's canonical spelling (`1*ctx` is written `ctx`)."""
    if text.isdigit():
        return Affine(0, int(text), 1)
    match = _SIZE.fullmatch(text)
    if match is None or text.startswith("ceildiv(") != (match[3] is not None):
        raise ValueError(f"size {text!r} is not an integer, [A*]ctx[+B] or ceildiv([A*]ctx[+B],D)")
    a, b, d = match.groups()
    size = Affine(1 if a is None else int(a), int(b or 0), 1 if d is None else int(d))
    if size_text(size) != text:
        raise ValueError(f"size {text!r} is written {size_text(size)}")
    return size


PART_NAME = SECTION_NAME
"""What a `part=` value may be (the grammar reads it as a NAME, as a section name)."""


def part_problem(part: str) -> str | None:
    """Why `part` cannot be written as `part=NAME`, or None."""
    if PART_NAME.fullmatch(part):
        return None
    return f"part {part!r} must be a letter or '_' followed by letters, digits, '_', '.' or '-'"
