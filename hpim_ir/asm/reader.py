"""Reading `.hpimasm` text: a vectorized fast path for HBM-PIM lines over the lark reference.

The lark grammar (`hpimasm.lark`) defines the language; `read_asm_reference` parses a whole
text with it and is the reference. `read_asm` gets the same program faster: one compiled regex
splits every line with a plain HBM-PIM instruction into a mnemonic and up to four `name=value`
fields and a `ctx=A/D` (`re.findall`, in C), a dictionary maps each line's signature
(mnemonic, field names, range or not) onto its instruction, and numpy turns the digit strings
into record columns and checks every value at once. `.section` directive lines are read by a
second regex. A line the fast path does not take (an SRAM-PIM line, a `part=` field, an
unknown signature, a value out of range, anything the regexes do not match) goes on its own
to the lark parser, which reads it or raises the error (a count with an offset, `off=`, is
read there too: a compiled decode step has a few); so every message comes from one place
and names the file, line and column. tests/test_asm.py and tests/test_asm_sram.py prove that
both paths give identical programs and identical errors.

SRAM-PIM lines are few (a compiled decode step has tens per layer; its layers are one
repeated section) and go through lark; their fields are checked by the `sram_isa` dialect's
verifier, so xDSL is imported only when a text has SRAM-PIM lines.
"""

import dataclasses
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

import numpy as np

from hpim_ir.asm.syntax import (
    CONTEXT_FIELDS,
    CONTEXT_OFFSET,
    HBM_BY_MNEMONIC,
    HBM_INSTRUCTIONS,
    MAX_VALUE,
    SECTION_FIELDS,
    SECTION_NAME,
    ChannelForm,
    InstructionSyntax,
    offset_problem,
    range_problem,
    record_of_fields,
    section_problem,
    size_of_text,
    value_problem,
)
from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.program import RECORD_DTYPE, HbmProgram, Section
from hpim_ir.sim.sram.program import RECORD_DTYPE as SRAM_RECORD_DTYPE

if TYPE_CHECKING:
    from lark import Lark, Token, Tree, UnexpectedInput

    from hpim_ir.sim.program import MachineProgram

Directive = tuple[int, str | None, int | None, int | None]
"""A `.section` line: (line number, name, repeat, row_stride), None where not given."""


@dataclass
class _Items:
    """What lines hold: HBM-PIM and SRAM-PIM records (each with its line), directives, and
    the `part=` of each line that has one."""

    hbm: list[tuple] = dataclasses.field(default_factory=list)
    sram: list[tuple] = dataclasses.field(default_factory=list)
    directives: list[Directive] = dataclasses.field(default_factory=list)
    parts: dict[int, str] = dataclasses.field(default_factory=dict)

    def extend(self, other: "_Items") -> None:
        self.hbm += other.hbm
        self.sram += other.sram
        self.directives += other.directives
        self.parts.update(other.parts)


def read_asm(text: str, filename: str = "<input>") -> "HbmProgram | MachineProgram":
    """The program written in `text`; `filename` only appears in error messages.

    An `HbmProgram` when every line is an HBM-PIM instruction without `part=` (what
    micro-benchmarks are), else a `MachineProgram` holding both streams, section by
    section, and the parts. Raises HpimError (file:line:column, what was found, what was
    expected) on bad input.
    """
    records, directives, rejected = _fast_records(text)
    items = _Items(directives=directives)
    if len(rejected):
        lines = text.split("\n")
        for number in rejected.tolist():
            items.extend(_lark_items(lines[number - 1] + "\n", filename, first_line=number))
        records = np.concatenate([records, np.array(items.hbm, dtype=RECORD_DTYPE)])
        records = records[np.argsort(records["line"], kind="stable")]
        items.directives.sort()
    return _program(records, items, filename)


def read_asm_reference(text: str, filename: str = "<input>") -> "HbmProgram | MachineProgram":
    """`read_asm` by the lark parser alone: the reference the fast path is tested against."""
    if not text.endswith("\n"):
        text += "\n"
    items = _lark_items(text, filename)
    return _program(np.array(items.hbm, dtype=RECORD_DTYPE), items, filename)


def _program(records: np.ndarray, items: _Items, filename: str) -> "HbmProgram | MachineProgram":
    """The program of HBM-PIM `records` (sorted by line) and the SRAM-PIM records, directives
    and parts of `items`: the lines before the first directive are a plain section if there
    are any (or no directives at all), and each directive starts a section that runs to the
    next one."""
    sram = np.array(items.sram, dtype=SRAM_RECORD_DTYPE)
    directives = items.directives
    at = [line for line, *_ in directives]
    hbm_starts = np.searchsorted(records["line"], at).tolist()
    sram_starts = np.searchsorted(sram["line"], at).tolist()
    plain = not directives or hbm_starts[0] > 0 or sram_starts[0] > 0
    hbm_starts = [0] * plain + hbm_starts
    sram_starts = [0] * plain + sram_starts
    fields = [(None, None, None)] * plain + [tuple(fields) for _, *fields in directives]
    hbm_sections = tuple(
        Section(start, stop, *given)
        for start, stop, given in zip(hbm_starts, hbm_starts[1:] + [len(records)], fields)
    )
    hbm = HbmProgram(records, hbm_sections)
    if not len(sram) and not items.parts:
        return hbm
    from hpim_ir.sim.program import MachineProgram, MachineSection
    from hpim_ir.sim.sram.program import SramProgram

    sections = tuple(
        MachineSection(s.name, s.times, s.stride, (s.start, s.stop), (start, stop))
        for s, start, stop in zip(hbm_sections, sram_starts, sram_starts[1:] + [len(sram)])
    )

    def parts(lines: np.ndarray) -> np.ndarray | None:
        if not items.parts:
            return None
        return np.array([items.parts.get(line, "") for line in lines.tolist()], dtype=str)

    return MachineProgram(
        hbm, SramProgram(sram), sections, filename, parts(records["line"]), parts(sram["line"])
    )


# --- the fast path -------------------------------------------------------------------------

# A recognized line: an optional mnemonic with a first field that may be a range `A:B`, three
# more fields and a `name=A/D` field, then blanks and a comment. Values have at most 10
# digits, so int64 cannot overflow; longer ones go to the lark path, which reports them. The
# last alternative takes any other line, so `findall` yields exactly one match per line and
# match i is line i + 1.
_NUMBER = r"([0-9]{1,10})"
_LINE = re.compile(
    r"^[ \t]*(?:([a-z]+\.[a-z_]+)"
    rf"(?:[ \t]+([a-z]+)={_NUMBER}(?::{_NUMBER})?)?"
    + rf"(?:[ \t]+([a-z]+)={_NUMBER})?" * 3
    + rf"(?:[ \t]+([a-z]+)={_NUMBER}/{_NUMBER})?"
    r")?[ \t]*(?:#[^\n]*)?\r?$"
    r"|^([^\n]*)$",
    re.MULTILINE,
)
_MNEMONIC_GROUP, _OTHER_GROUP = 0, 13
_NAME_GROUPS = (1, 4, 6, 8, 10)  # the names of the five fields
# Value positions: first field, its range end, three fields, the two numbers of `ctx=A/D`.
_VALUE_GROUPS = (2, 3, 5, 7, 9, 11, 12)
_FIELD_VALUE = (0, 2, 3, 4)  # the value position of each of the four `name=value` fields
_CONTEXT_VALUES = (5, 6)
_COLUMNS = ("ch_lo", "ch_hi", "row", "col", "n", "bank", *CONTEXT_FIELDS)
# The largest value at each position; a range's end is one past its last channel.
_MAXIMUM = np.array([MAX_VALUE, MAX_VALUE + 1] + [MAX_VALUE] * 5)

_DIRECTIVE = re.compile(
    rf"[ \t]*\.section(?:[ \t]+({SECTION_NAME.pattern}))?"
    + "".join(rf"(?:[ \t]+{field}={_NUMBER})?" for field, _ in SECTION_FIELDS)
    + r"[ \t]*(?:#.*)?\r?"
)


class _SignatureIndex(dict):
    """Line signature -> row of the `_FastTable`; a signature no instruction has -> -1."""

    def __missing__(self, key: tuple) -> int:
        return -1


@dataclass(frozen=True)
class _FastTable:
    """How each line signature fills a record, one row per signature (row 0: blank line).

    A line's signature is (mnemonic, five field names, has a range end, other text). Record
    column c of a line with signature s is `values[source[s, c]] + offset[s, c]` (a single
    channel C is the range [C, C + 1)), or `const[s, c]` where `source` is -1. Its value at
    position p must be at least `minimum[s, p]`; `check_range[s]`: the channel range must not
    be empty.
    """

    index: _SignatureIndex
    opcode: np.ndarray
    source: np.ndarray
    offset: np.ndarray
    const: np.ndarray
    minimum: np.ndarray
    check_range: np.ndarray


_CHANNEL_SPELLINGS = {  # (has a channel field, has a range end) for each channel form
    ChannelForm.NONE: ((False, False),),
    ChannelForm.ONE: ((True, False),),
    ChannelForm.OPTIONAL: ((False, False), (True, False)),
    ChannelForm.RANGE: ((True, False), (True, True)),
}


def _fast_table() -> _FastTable:
    spellings: list[tuple[InstructionSyntax, bool, bool, bool]] = [
        (syntax, has_channel, has_end, context)
        for syntax in HBM_INSTRUCTIONS.values()
        for has_channel, has_end in _CHANNEL_SPELLINGS[syntax.channel]
        for context in ((False, True) if syntax.count else (False,))
    ]
    rows = len(spellings) + 1
    index = _SignatureIndex({("",) * 6 + (False, False): 0})
    opcode = np.zeros(rows, dtype=np.uint8)
    source = np.full((rows, len(_COLUMNS)), -1, dtype=np.int64)
    offset = np.zeros_like(source)
    const = np.zeros_like(source)
    minimum = np.zeros((rows, len(_VALUE_GROUPS)), dtype=np.int64)
    check_range = np.zeros(rows, dtype=bool)
    for s, (syntax, has_channel, has_end, context) in enumerate(spellings, start=1):
        names = ["ch"] * has_channel + [field.name for field in syntax.fields]
        names += [""] * (4 - len(names)) + ["ctx" if context else ""]
        index[(syntax.mnemonic, *names, has_end, False)] = s
        opcode[s] = syntax.op
        record = record_of_fields(syntax, None, {f.name: 0 for f in syntax.fields})
        const[s] = [record[RECORD_DTYPE.names.index(column)] for column in _COLUMNS]
        if has_channel:
            source[s, :2] = (0, 1) if has_end else (0, 0)
            offset[s, 1] = 0 if has_end else 1
            check_range[s] = has_end
        for field, position in zip(syntax.fields, _FIELD_VALUE[has_channel:]):
            source[s, _COLUMNS.index(field.column)] = position
            minimum[s, position] = 0 if context and field == syntax.count else field.minimum
        if context:
            for name, position in zip(CONTEXT_FIELDS, _CONTEXT_VALUES):
                source[s, _COLUMNS.index(name)] = position
                minimum[s, position] = 1
    return _FastTable(index, opcode, source, offset, const, minimum, check_range)


_TABLE = _fast_table()


def _fast_records(text: str) -> tuple[np.ndarray, list[Directive], np.ndarray]:
    """Records of the instruction lines and the directives the fast path takes, and the
    numbers of the other non-blank lines."""
    matches = _LINE.findall(text)
    count = len(matches)
    assert count == text.count("\n") + 1, "the line regex must match every line exactly once"
    groups = list(zip(*matches))
    keys = zip(
        groups[_MNEMONIC_GROUP],
        *(groups[g] for g in _NAME_GROUPS),
        map(bool, groups[_VALUE_GROUPS[1]]),
        map(bool, groups[_OTHER_GROUP]),
    )
    signature = np.fromiter(map(_TABLE.index.__getitem__, keys), np.int64, count)
    # Every value prefixed with "0", so that a missing one reads as 0, and parsed by numpy in C.
    values = np.stack(
        [np.fromstring("0" + " 0".join(groups[g]), np.int64, count, " ") for g in _VALUE_GROUPS]
    )
    known = np.maximum(signature, 0)
    lines = np.arange(count)
    records = np.empty(count, dtype=RECORD_DTYPE)
    records["op"] = _TABLE.opcode[known]
    for c, column in enumerate(_COLUMNS):
        source = _TABLE.source[known, c]
        picked = values[np.maximum(source, 0), lines] + _TABLE.offset[known, c]
        records[column] = np.where(source >= 0, picked, _TABLE.const[known, c])
    records["line"] = lines + 1
    records["ctx_off"] = 0  # a line with `off=` does not match: it goes to the lark path
    rejected = (
        (signature < 0)
        | (values > _MAXIMUM[:, None]).any(axis=0)
        | (values < _TABLE.minimum[known].T).any(axis=0)
        | (_TABLE.check_range[known] & (records["ch_hi"] <= records["ch_lo"]))
    )
    directives = []
    for number in np.flatnonzero(rejected & (signature < 0)).tolist():
        directive = _fast_directive(groups[_OTHER_GROUP][number], number + 1)
        if directive is not None:
            directives.append(directive)
            rejected[number] = False
    return records[(signature > 0) & ~rejected], directives, np.flatnonzero(rejected) + 1


def _fast_directive(line: str, number: int) -> Directive | None:
    """The directive written on `line`, or None if the fast path does not take it."""
    match = _DIRECTIVE.fullmatch(line)
    if match is None:
        return None
    name, *numbers = match.groups()
    repeat, row_stride = (int(value) if value else None for value in numbers)
    if section_problem(name, repeat, row_stride):
        return None
    return number, name, repeat, row_stride


# --- the lark path -------------------------------------------------------------------------


@cache
def _parser() -> "Lark":
    from lark import Lark

    grammar = files("hpim_ir.asm").joinpath("hpimasm.lark").read_text()
    return Lark(grammar, parser="lalr")


def _lark_items(text: str, filename: str, first_line: int = 1) -> _Items:
    """Records, directives and parts of `text` (newline-terminated) whose first line is line
    `first_line` of the file."""
    from lark import UnexpectedInput

    try:
        tree = _parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(error, text, filename, first_line) from None
    items = _Items()
    for item in tree.children:
        if item.data == "section":
            items.directives.append(_directive(item, text, filename, first_line))
            continue
        mnemonic, *fields = item.children
        line = first_line + mnemonic.line - 1
        if fields and fields[-1].data == "part":
            items.parts[line] = str(fields.pop().children[0])
        if item.data.startswith("sram_"):
            items.sram.append(_sram_record(mnemonic, fields, text, filename, first_line))
        else:
            items.hbm.append(_record(mnemonic, fields, text, filename, first_line))
    return items


def _record(mnemonic: "Token", fields: list, text: str, filename: str, first_line: int) -> tuple:
    """The record of one parsed HBM-PIM instruction, its values checked as the fast path
    checks them (in the order written; a count may be 0 when a `ctx=` follows). The fast path
    takes no `off=`: its lines (a few per compiled decode step) all come here."""
    syntax = HBM_BY_MNEMONIC[mnemonic]
    minimum = {field.name: field.minimum for field in syntax.fields}
    if any(field.data == "ctx" for field in fields):
        minimum.update({name: 1 for name in CONTEXT_FIELDS}, **{syntax.count.name: 0})
    channels = None
    values: dict[str, int] = {}
    for field in fields:
        numbers = [int(token) for token in field.children]
        if field.data in ("ch", "channels"):
            first, *end = numbers
            channels = (first, end[0] if end else first + 1)
            problems = [range_problem(*channels) if end else value_problem("ch", first)]
        elif field.data == "off":  # the grammar takes it only after a ctx=
            values[CONTEXT_OFFSET] = numbers[0]
            problems = [offset_problem(numbers[0], context=True)]
        else:
            names = CONTEXT_FIELDS if field.data == "ctx" else (field.data,)
            values.update(zip(names, numbers))
            problems = [value_problem(n, v, minimum[n]) for n, v in zip(names, numbers)]
        for token, problem in zip(field.children, problems):
            if problem:
                raise _located(problem, text, filename, first_line, token.line, token.column)
    return record_of_fields(syntax, channels, values, line=first_line + mnemonic.line - 1)


_SRAM_INT_MAX = int(np.iinfo(np.int32).max)
"""The widest integer column of an SRAM-PIM record (int32): no field can exceed it."""


def _sram_record(
    mnemonic: "Token", fields: list, text: str, filename: str, first_line: int
) -> tuple:
    """The record of one parsed SRAM-PIM instruction. Each number and size is checked where
    it is written; what the fields make together (a buffer number past the record's int16,
    a size that reaches 0 at some context length) by the `sram_isa` verifier, reported at
    the field its message names."""
    from hpim_ir.dialects.sram_isa import INSTRUCTION_OPS
    from hpim_ir.sim.sram.program import SramOp

    _, name, *function = str(mnemonic).split(".")  # `sram.vcu.softmax`: a vcu's function
    op = SramOp[name.upper()]
    kind = function[0] if function else None
    cores = None
    values: dict[str, object] = {}
    written = {"core": mnemonic}  # where each field is written, for the verifier's message
    for field in fields:
        if not hasattr(field, "data"):  # alloc's `space=am` / `space=pim` token
            kind = str(field).removeprefix("space=")
            continue
        token = field.children[0]
        name = field.data.removeprefix("size_")
        problem = None
        if name == "cores":
            written["core"] = token
            lo, *hi = (int(t) for t in field.children)
            cores = (lo, hi[0] if hi else lo + 1)
            problem = (
                range_problem(*cores, field="cores", noun="core")
                if hi
                else value_problem("cores", lo)
            )
        elif token.type == "SIZE":
            written[name] = token
            try:
                values[name] = size_of_text(str(token))
            except ValueError as error:
                problem = str(error)
        else:
            written[name] = token
            values[name] = int(token)
            if values[name] > _SRAM_INT_MAX:
                problem = f"{name} must be at most {_SRAM_INT_MAX}, got {token}"
        if problem:
            raise _located(problem, text, filename, first_line, token.line, token.column)
    instruction = INSTRUCTION_OPS[op](cores, kind=kind, **values)
    if problem := instruction.problem():
        # The verifier's messages start with the field they are about (`bytes must be ...`,
        # `core range ...`); others (`takes no src1`) are about the instruction.
        where = written.get(problem.split(" ", 1)[0], mnemonic)
        raise _located(
            f"{mnemonic}: {problem}", text, filename, first_line, where.line, where.column
        )
    return _sram_row(instruction, first_line + mnemonic.line - 1)


def _sram_row(instruction, line: int) -> tuple:
    """The record of a verified `sram_isa` instruction, as `program_from_ops` makes it."""
    from hpim_ir.sim.sram.program import ProgramBuilder

    builder = ProgramBuilder()
    builder.add(instruction.OP, instruction.cores(), **instruction.record_fields(), line=line)
    return builder.rows[0]


def _directive(item: "Tree", text: str, filename: str, first_line: int) -> Directive:
    """A parsed `.section` line, its values checked."""
    keyword, *parts = item.children
    name, fields = None, {}
    for part in parts:
        if getattr(part, "type", None) == "NAME":
            name = str(part)
        else:
            token = part.children[0]
            fields[part.data] = int(token)
            minimum = dict(SECTION_FIELDS)[part.data]
            if problem := value_problem(part.data, int(token), minimum):
                raise _located(problem, text, filename, first_line, token.line, token.column)
    repeat, row_stride = (fields.get(field) for field, _ in SECTION_FIELDS)
    return first_line + keyword.line - 1, name, repeat, row_stride


def _located(
    message: str, text: str, filename: str, first_line: int, line: int, column: int
) -> HpimError:
    """`file:line:column: message`, then the source line and a caret under the column."""
    source = text.split("\n")[line - 1].removesuffix("\r")
    caret = "".join(c if c == "\t" else " " for c in source[: column - 1]) + "^"
    return HpimError(
        f"{filename}:{first_line + line - 1}:{column}: {message}\n    {source}\n    {caret}"
    )


def _syntax_error(error: "UnexpectedInput", text: str, filename: str, first_line: int) -> HpimError:
    """The lark error as: what was found at the line and column, and what was expected."""
    source = text.split("\n")[error.line - 1].removesuffix("\r")
    start = len(source) - len(source.lstrip(" \t"))
    mnemonic = _WORD.match(source, start).group()
    at = error.column - 1
    if start <= at < start + len(mnemonic):
        what = "directive" if mnemonic.startswith(".") else "instruction"
        message, at = f"unknown {what} {mnemonic!r}", start
    else:
        at = len(source) - len(source[at:].lstrip(" \t"))
        found = _WORD.match(source, at).group()
        # The parser state knows which tokens it accepts here; LALR's lookahead sets (`expected`)
        # may also hold tokens that only a sibling rule accepts.
        parser_state = getattr(error, "interactive_parser", None)
        expected = parser_state.accepts() if parser_state else getattr(error, "expected", ())
        described = {_describe(name) for name in expected}
        if "'part='" in described:
            # The blank before an optional last field is taken already; the line may end too.
            described.add(_TERMINAL_NAMES["_NL"])
        message = f"unexpected {repr(found) if found else 'end of line'}"
        if described:
            message += "; expected " + _one_of(sorted(described))
    return _located(message, text, filename, first_line, error.line, at + 1)


_WORD = re.compile(r"[^ \t#]*")  # a word ends at a blank or where a comment starts

_TERMINAL_NAMES = {
    "INT": "a non-negative integer",
    "SIGNED_INT": "an integer",
    "NAME": "a section name",
    "_WS": "a space",
    "_NL": "end of line",
    "$END": "end of file",
}


def _describe(terminal: str) -> str:
    """A terminal as a reader knows it: `'col='` for a literal, words for the others."""
    if terminal in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[terminal]
    return repr(_parser().get_terminal(terminal).pattern.value)


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
