"""The `sram_isa` dialect: the SRAM-PIM cores' instruction stream.

An `sram_isa.stream` holds the instructions of every core in program order. One op per
instruction kind (`SramOp`): `load`, `store`, `macro_write`, `mvm`, `stream_mvm`, `gemm`,
`vcu`, `transpose`, `allgather`, `reduce`, `scalar`, `signal`, `wait`, `barrier`, `alloc`,
`free`. Their exact semantics are on `SramOp` in `hpim_ir.sim.sram.program`; the rationale of
the dialect's shape is in docs/dialects/sram_isa.md. All ops share one syntax and one
verifier, driven by the simulator's table of instruction forms (`FORMS`):

    sram_isa.OP [KIND] [cores LO to HI] [dst D] [src0 X] [src1 Y] [tok T] [SIZE VALUE]... [{attrs}]

e.g. `sram_isa.vcu softmax cores 0 to 32 dst 4 src0 3 n "ctx + 1"`, `sram_isa.signal tok 7`,
`sram_isa.alloc am cores 0 to 32 dst 3 bytes 256`. Every field is a property:

- `core_lo`, `core_hi` (i64): the half-open range of cores that each execute the
  instruction (a collective's participants); both absent: every core of the machine.
- `kind` (string): the function of `vcu` (a `VcuFn` name: "softmax", "exp", ...) and the
  space of `alloc` ("am": activation memory, "pim": the PIM macros); no other op has one.
- `dst`, `src0`, `src1` (i64): buffer numbers, present exactly where the op's `Form` has the
  operand (an optional operand may be absent).
- `tok` (i64): the token of `signal` / `wait`, shared with the HBM-PIM stream.
- sizes, named as in `FORMS` (`bytes`, `rows`, `cols`, `m`, `n`, `k`; `alloc` has `bytes` in
  "am" and `rows`, `cols` in "pim"): `#sram_isa.size` attributes, each `ceil((a*ctx + b)/d)`
  in the context length `ctx` (an `Affine`), so a decode step compiles once for every
  context length. A constant prints as an integer (`bytes 256`), a symbolic size as the
  string `Affine` prints (`rows "ctx + 1"`, `bytes "256*ctx + 256"`,
  `n "ceildiv(ctx + 1, 4)"`).

The verifier checks what holds on every machine: numbers non-negative, core ranges
non-empty, operands as the Form says, a known kind, every size at least 1 at every context
length from `MIN_CTX` on (at least 0 for `stream_mvm`, `EMPTY_ALLOWED`: the product of a
piece of a streamed context, empty at short contexts), values within the record's integer
widths. Bounds against a machine (a core below its core count, buffers live and within
activation memory) are checked when the program is simulated.
`program_from_ops` and `ops_from_program` convert a stream to and from the `SramProgram`
record array the simulator consumes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import IntEnum
from typing import ClassVar, Self

import numpy as np
from xdsl.dialects.builtin import I64, IntAttr, IntegerAttr, StringAttr, i64
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    opt_prop_def,
    param_def,
    traits_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.mlir_lexer import MLIRTokenKind

from hpim_ir.dialects.hbm_isa import SectionStreamBase
from hpim_ir.dialects.interned import int_attr, str_attr
from hpim_ir.errors import HpimError
from hpim_ir.sim.sram.program import (
    FORMS,
    MAX_SIZES,
    PIM_ALLOC_SIZES,
    RECORD_DTYPE,
    Affine,
    ProgramBuilder,
    Space,
    SramOp,
    SramProgram,
    VcuFn,
    smallest_size,
)

# --- the fields ------------------------------------------------------------------------------

KINDS: dict[SramOp, type[IntEnum]] = {SramOp.VCU: VcuFn, SramOp.ALLOC: Space}
"""The ops that have a `kind`, and the enum naming its values (lower-case member names)."""

KIND_NAMES: frozenset[str] = frozenset(m.name.lower() for enum in KINDS.values() for m in enum)

TOKEN_OPS = (SramOp.SIGNAL, SramOp.WAIT)
"""The ops that have a `tok`."""

BUFFER_FIELDS = ("dst", "src0", "src1")

SIZE_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(name for form in FORMS.values() for name in form.sizes + PIM_ALLOC_SIZES)
)
"""Every size name, in the order the custom syntax prints them (each Form's order)."""

INTEGER_FIELDS = (*BUFFER_FIELDS, "tok")
FIELD_KEYWORDS = (*INTEGER_FIELDS, *SIZE_NAMES)
"""The `name value` fields after the core range, in printed order."""

ROLE_WORDS = {"am": "an activation-memory buffer", "pim": "a PIM buffer", "buffer": "a buffer"}


def _largest(column: str) -> int:
    return int(np.iinfo(RECORD_DTYPE[column]).max)


MAX_CORE = _largest("core_hi")
MAX_BUFFER = _largest("dst")
MAX_TOKEN = _largest("tok")
SIZE_RANGE = (int(np.iinfo(RECORD_DTYPE["a0"]).min), _largest("a0"))
"""The values `a`, `b` and `d` of a size can take: the record holds them as int32."""


# --- sizes -----------------------------------------------------------------------------------

_SYMBOLIC_SIZE = re.compile(
    r"(?P<ceil>ceildiv\()?"  # ceildiv(..., D) around the rest when d != 1
    r"(?:(?P<a>-?\d+)\*)?ctx"  # A*ctx, or ctx when a = 1
    r"(?: (?P<sign>[+-]) (?P<b>\d+))?"  # + B or - B when b != 0
    r"(?(ceil), (?P<d>-?\d+)\))"
)


def size_spelling(size: Affine) -> str:
    """How a size is written: a constant as an integer, a symbolic size quoted."""
    return str(size) if size.a == 0 and size.d == 1 else f'"{size}"'


def size_of_text(text: str) -> Affine:
    """The symbolic size written `text`, exactly as `Affine.__str__` writes it ("ctx + 1",
    "256*ctx", "ceildiv(ctx + 1, 4)"). Raises ValueError naming the text otherwise."""
    match = _SYMBOLIC_SIZE.fullmatch(text)
    if match is None:
        if re.fullmatch(r"-?\d+", text):
            raise ValueError(f'size "{text}" is a constant: write it without quotes, {int(text)}')
        raise ValueError(
            f'size "{text}" is not a size: write an integer, or a string such as "ctx", '
            '"256*ctx", "ctx + 1", "ceildiv(ctx + 1, 4)" (A*ctx + B, divided up by D)'
        )
    b = int(match["b"] or 0)
    size = Affine(
        int(match["a"]) if match["a"] is not None else 1,
        -b if match["sign"] == "-" else b,
        int(match["d"]) if match["d"] is not None else 1,
    )
    if str(size) != text:
        raise ValueError(f'size "{text}" is written {size_spelling(size)}')
    return size


def parse_size(parser: AttrParser) -> Affine:
    """A size: an integer, or a string holding a symbolic size (`size_of_text`)."""
    value = parser.parse_optional_integer(allow_boolean=False)
    if value is not None:
        return Affine(0, value, 1)
    start = parser.pos
    text = parser.parse_str_literal(' (a size: an integer, or a string such as "ctx + 1")')
    try:
        return size_of_text(text)
    except ValueError as error:
        parser.raise_error(str(error), start, parser.pos)


MIN_CTX = 0
"""The smallest context length a program is simulated at; sizes must be positive from it on."""


def first_ctx_below(size: Affine, minimum: int = 1) -> int | None:
    """The smallest `ctx >= MIN_CTX` at which `size` (with `d >= 1`) is below `minimum`, or
    None."""
    # ceil(y / d) < m iff y <= (m - 1) * d for d >= 1, and y = a*ctx + b is monotone in ctx: it
    # stays above that from MIN_CTX on unless it starts at or below it or falls (a < 0).
    threshold = (minimum - 1) * size.d
    if size.a * MIN_CTX + size.b <= threshold:
        return MIN_CTX
    if size.a < 0:
        return -(-(size.b - threshold) // -size.a)
    return None


def size_problem(name: str, size: Affine, minimum: int = 1) -> str | None:
    """Why `size` cannot be size `name`, which must be at least `minimum` at every ctx >=
    MIN_CTX (1; 0 for the instructions of `EMPTY_ALLOWED`)."""
    lowest, highest = SIZE_RANGE
    spelled = f"{name} {size_spelling(size)}"
    if not all(lowest <= value <= highest for value in (size.a, size.b, size.d)):
        return f"{spelled} does not fit a record: a, b and d of ceil((a*ctx + b)/d) are 32-bit"
    if size.d < 1:
        return f"{spelled} divides by {size.d}: the divisor must be at least 1"
    ctx = first_ctx_below(size, minimum)
    if ctx is None:
        return None
    if size.a == 0 and size.d == 1:
        return f"{name} must be at least {minimum}, got {size.b}"
    return (
        f"{spelled} is {size(ctx)} at ctx = {ctx}: "
        f"a size must be at least {minimum} at every ctx >= {MIN_CTX}"
    )


@irdl_attr_definition
class SizeAttr(ParametrizedAttribute):
    """`#sram_isa.size<256>`, `#sram_isa.size<"ceildiv(ctx + 1, 4)">`: a size in the context
    length, `ceil((a*ctx + b)/d)` (`Affine`). The op that holds it checks its value."""

    name = "sram_isa.size"
    a: IntAttr = param_def()
    b: IntAttr = param_def()
    d: IntAttr = param_def()

    def __init__(self, size: Affine | int):
        size = Affine.of(size)
        super().__init__(IntAttr(size.a), IntAttr(size.b), IntAttr(size.d))

    @property
    def affine(self) -> Affine:
        return Affine(self.a.data, self.b.data, self.d.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            size = parse_size(parser)
        return (IntAttr(size.a), IntAttr(size.b), IntAttr(size.d))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(size_spelling(self.affine))


def _next_field_word(parser: Parser) -> str | None:
    """The next token if it is a word that can only belong to this op (a bare identifier
    without a dot: the next op's name has its dialect's prefix), else None."""
    token = parser._current_token  # noqa: SLF001 (xDSL's parser has no public peek)
    if token.kind is MLIRTokenKind.BARE_IDENT and "." not in token.text:
        return token.text
    return None


# --- the stream ------------------------------------------------------------------------------


@irdl_op_definition
class StreamOp(SectionStreamBase):
    """`sram_isa.stream { ... }`: the SRAM-PIM instruction stream of every core; its block
    holds only `sram_isa` instructions, in program order (each core runs the instructions
    whose core range includes it, in this order).

    A compiled program is a sequence of sections (the prologue, the decoder layers, the
    epilogue), each a stream per subsystem. A section's stream may be `repeat`ed: iteration
    `l` of the block is decoder layer `l`, so the layers' instructions exist once. `section`
    names the section for people and tools."""

    name = "sram_isa.stream"

    def verify_(self) -> None:
        self.verify_stream(SramInstructionOp, "sram_isa")


# --- the instructions ------------------------------------------------------------------------


class SramInstructionOp(IRDLOperation):
    """An instruction of an `sram_isa.stream`: op `sram_isa.X` is `SramOp.X`, which each
    subclass names as `OP`. Every field is declared here, optional; which ones an op has is
    its `Form` (`FORMS[OP]`), which the verifier, the syntax and the record bridge all read.

    Constructed from the fields, e.g. `VcuOp((0, 32), kind="softmax", dst=4, src0=3,
    n=CTX + 1)`; a size is an int or an `Affine`, `cores` a half-open `(lo, hi)` or None
    (every core), a field given as None is absent."""

    OP: ClassVar[SramOp]

    kind = opt_prop_def(StringAttr)
    core_lo = opt_prop_def(IntegerAttr[I64])
    core_hi = opt_prop_def(IntegerAttr[I64])
    dst = opt_prop_def(IntegerAttr[I64])
    src0 = opt_prop_def(IntegerAttr[I64])
    src1 = opt_prop_def(IntegerAttr[I64])
    tok = opt_prop_def(IntegerAttr[I64])
    bytes = opt_prop_def(SizeAttr)
    rows = opt_prop_def(SizeAttr)
    cols = opt_prop_def(SizeAttr)
    m = opt_prop_def(SizeAttr)
    n = opt_prop_def(SizeAttr)
    k = opt_prop_def(SizeAttr)

    traits = traits_def(HasParent(StreamOp))

    def __init__(
        self,
        cores: tuple[int, int] | None = None,
        *,
        kind: str | None = None,
        attributes: dict[str, Attribute] | None = None,
        **fields: int | Affine | None,
    ):
        properties: dict[str, Attribute] = {}
        if kind is not None:
            properties["kind"] = str_attr(kind)
        if cores is not None:
            properties["core_lo"] = int_attr(cores[0])
            properties["core_hi"] = int_attr(cores[1])
        for name, value in fields.items():
            if value is None:
                continue
            if name in SIZE_NAMES:
                properties[name] = SizeAttr(value)
            else:
                properties[name] = int_attr(int(value))
        super().__init__(properties=properties, attributes=attributes)

    # -- reading the fields --

    def cores(self) -> tuple[int, int] | None:
        """The half-open core range, or None for every core."""
        if self.core_lo is None or self.core_hi is None:
            return None
        return (self.core_lo.value.data, self.core_hi.value.data)

    def integer(self, name: str) -> int | None:
        """Buffer operand or token `name`, or None if absent."""
        attr = self.properties.get(name)
        return attr.value.data if isinstance(attr, IntegerAttr) else None

    def sizes(self) -> dict[str, Affine]:
        """The sizes present, by name."""
        return {
            name: attr.affine
            for name in SIZE_NAMES
            if isinstance(attr := self.properties.get(name), SizeAttr)
        }

    def kind_name(self) -> str | None:
        """The `kind` (vcu function, alloc space), or None if absent."""
        return self.kind.data if self.kind is not None else None

    @classmethod
    def size_names(cls, kind: str | None) -> tuple[str, ...] | None:
        """The sizes this op takes, in record order; None while an alloc's space is unknown."""
        if cls.OP is SramOp.ALLOC:
            return {"am": FORMS[cls.OP].sizes, "pim": PIM_ALLOC_SIZES}.get(kind or "")
        return FORMS[cls.OP].sizes

    # -- verification --

    def problem(self) -> str | None:
        """The first reason these fields do not make this instruction, or None."""
        return (
            self._kind_problem()
            or self._cores_problem()
            or self._operand_problem()
            or self._size_problem()
        )

    def verify_(self) -> None:
        if problem := self.problem():
            raise VerifyException(f"'{self.name}': {problem}")

    def _kind_problem(self) -> str | None:
        kind = self.kind_name()
        enum = KINDS.get(self.OP)
        if enum is None:
            return None if kind is None else f'takes no kind, got "{kind}"'
        known = [member.name.lower() for member in enum]
        if kind not in known:
            what = f'"{kind}" is unknown' if kind is not None else "is required"
            return f"kind {what} (one of {', '.join(known)})"
        return None

    def _cores_problem(self) -> str | None:
        if (self.core_lo is None) != (self.core_hi is None):
            return "core_lo and core_hi go together: give a range, or neither for every core"
        cores = self.cores()
        if cores is None:
            return None
        lo, hi = cores
        if lo < 0:
            return f"core range {lo} to {hi}: core_lo must be non-negative"
        if hi <= lo:
            return f"core range {lo} to {hi} is empty"
        if hi > MAX_CORE:
            return f"core range {lo} to {hi}: core_hi must be at most {MAX_CORE}"
        return None

    def _operand_problem(self) -> str | None:
        form = FORMS[self.OP]
        for name in BUFFER_FIELDS:
            role, value = getattr(form, name), self.integer(name)
            if role is None:
                if value is not None:
                    takes = [f for f in BUFFER_FIELDS if getattr(form, f) is not None]
                    operands = ", ".join(takes) or "none"
                    return f"takes no {name} (its operands: {operands}), got {value}"
            elif value is None:
                if not role.endswith("?"):
                    return f"{name} is required ({ROLE_WORDS[role]} number)"
            elif not 0 <= value <= MAX_BUFFER:
                return f"{name} must be a buffer number in 0..{MAX_BUFFER}, got {value}"
        tok = self.integer("tok")
        if self.OP not in TOKEN_OPS:
            return None if tok is None else f"takes no tok (only signal and wait do), got {tok}"
        if tok is None:
            return "tok is required"
        if not 0 <= tok <= MAX_TOKEN:
            return f"tok must be in 0..{MAX_TOKEN}, got {tok}"
        return None

    def _size_problem(self) -> str | None:
        sizes = self.sizes()
        wanted = self.size_names(self.kind_name())
        assert wanted is not None, "an alloc without a known space fails _kind_problem first"
        for name, size in sizes.items():
            if name not in wanted:
                return f"takes no size {name} (its sizes: {', '.join(wanted) or 'none'})"
            if problem := size_problem(name, size, smallest_size(self.OP)):
                return problem
        missing = [name for name in wanted if name not in sizes]
        if missing:
            return f"size {missing[0]} is required (its sizes: {', '.join(wanted)})"
        return None

    # -- syntax --

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        properties: dict[str, Attribute] = {}
        # a known kind is a bare word; any other (invalid) kind is a string for the verifier
        kind = parser.parse_optional_keyword_in(KIND_NAMES)
        if kind is None:
            kind = parser.parse_optional_str_literal()
        if kind is not None:
            properties["kind"] = StringAttr(kind)
        if parser.parse_optional_keyword("cores") is not None:
            properties["core_lo"] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
            parser.parse_keyword("to")
            properties["core_hi"] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
        at = parser.pos
        while (name := parser.parse_optional_keyword_in(FIELD_KEYWORDS)) is not None:
            if name in properties:
                parser.raise_error(f"'{cls.name}': {name} is given twice", at, parser.pos)
            if name in SIZE_NAMES:
                properties[name] = SizeAttr(parse_size(parser))
            else:
                properties[name] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
            at = parser.pos
        if (word := _next_field_word(parser)) is not None:
            enum = KINDS.get(cls.OP)
            kinds = f"a kind ({', '.join(m.name.lower() for m in enum)}), " if enum else ""
            parser.raise_error(
                f"'{cls.name}': unexpected '{word}'; expected {kinds}'cores LO to HI', "
                f"or a field ({', '.join(FIELD_KEYWORDS)})",
                parser.pos,
                parser.pos + len(word),
            )
        return cls.create(properties=properties, attributes=parser.parse_optional_attr_dict())

    def print(self, printer: Printer) -> None:
        if (kind := self.kind_name()) is not None:
            printer.print_string(" ")
            if kind in KIND_NAMES:
                printer.print_string(kind)
            else:
                printer.print_string_literal(kind)
        if (cores := self.cores()) is not None:
            printer.print_string(f" cores {cores[0]} to {cores[1]}")
        for name in INTEGER_FIELDS:
            if (value := self.integer(name)) is not None:
                printer.print_string(f" {name} {value}")
        for name, size in self.sizes().items():
            printer.print_string(f" {name} {size_spelling(size)}")
        printer.print_op_attributes(self.attributes)

    # -- records --

    def record_fields(self) -> dict[str, object]:
        """The keyword arguments of `ProgramBuilder.add` that make this instruction's record
        (line 0: the IR has no source line)."""
        enum = KINDS.get(self.OP)
        integers = {name: -1 if (v := self.integer(name)) is None else v for name in INTEGER_FIELDS}
        sizes = self.sizes()
        return {
            "kind": int(enum[self.kind_name().upper()]) if enum is not None else 0,
            **integers,
            "sizes": [sizes[name] for name in self.size_names(self.kind_name())],
        }


@irdl_op_definition
class LoadOp(SramInstructionOp):
    """`sram_isa.load [cores A to B] dst D bytes E`: E bytes arrive over the link from the
    HBM-PIM subsystem into activation-memory buffer D."""

    name = "sram_isa.load"
    OP: ClassVar[SramOp] = SramOp.LOAD


@irdl_op_definition
class StoreOp(SramInstructionOp):
    """`sram_isa.store [cores A to B] src0 X bytes E`: E bytes of activation-memory buffer X
    leave over the link to the HBM-PIM subsystem."""

    name = "sram_isa.store"
    OP: ClassVar[SramOp] = SramOp.STORE


@irdl_op_definition
class MacroWriteOp(SramInstructionOp):
    """`sram_isa.macro_write dst M src0 X rows R cols C`: write the FP16 R x C matrix in
    activation-memory buffer X into PIM buffer M (K^T or V tiles of a resident KV cache)."""

    name = "sram_isa.macro_write"
    OP: ClassVar[SramOp] = SramOp.MACRO_WRITE


@irdl_op_definition
class MvmOp(SramInstructionOp):
    """`sram_isa.mvm dst Y src0 X src1 M rows R cols C`: Y = X . W on the PIM unit, X a
    vector of R FP16 values, W the R x C matrix resident in PIM buffer M."""

    name = "sram_isa.mvm"
    OP: ClassVar[SramOp] = SramOp.MVM


@irdl_op_definition
class StreamMvmOp(SramInstructionOp):
    """`sram_isa.stream_mvm dst Y src0 X rows R cols C`: Y = X . W with the R x C matrix W
    streamed from HBM over the link into the macros (the KV-in-HBM form of q . K^T, s . V)."""

    name = "sram_isa.stream_mvm"
    OP: ClassVar[SramOp] = SramOp.STREAM_MVM


@irdl_op_definition
class GemmOp(SramInstructionOp):
    """`sram_isa.gemm dst C src0 A src1 B m M n N k K`: C (M x N) = A (M x K) . B (K x N)
    on the TCU (prefill projections)."""

    name = "sram_isa.gemm"
    OP: ClassVar[SramOp] = SramOp.GEMM


@irdl_op_definition
class VcuOp(SramInstructionOp):
    """`sram_isa.vcu FN dst Y src0 X [src1 Z] n N`: vector function FN (a `VcuFn` name:
    exp, max, sum, softmax, layernorm, rmsnorm, gelu, relu, silu, mul, add, rope) over N
    elements of X (and Z: the second operand, or parameters such as gamma)."""

    name = "sram_isa.vcu"
    OP: ClassVar[SramOp] = SramOp.VCU


@irdl_op_definition
class TransposeOp(SramInstructionOp):
    """`sram_isa.transpose dst Y src0 X rows R cols C`: Y (C x R) = X^T."""

    name = "sram_isa.transpose"
    OP: ClassVar[SramOp] = SramOp.TRANSPOSE


@irdl_op_definition
class AllgatherOp(SramInstructionOp):
    """`sram_isa.allgather cores A to B dst Y src0 X bytes E`: every core of the range
    contributes E bytes of X and receives all contributions in Y (ring over the NoC)."""

    name = "sram_isa.allgather"
    OP: ClassVar[SramOp] = SramOp.ALLGATHER


@irdl_op_definition
class ReduceOp(SramInstructionOp):
    """`sram_isa.reduce cores A to B [dst Y] src0 X bytes E`: the FP16 sum of every core's
    E bytes of X arrives in Y on the first core of the range (tree over the NoC)."""

    name = "sram_isa.reduce"
    OP: ClassVar[SramOp] = SramOp.REDUCE


@irdl_op_definition
class ScalarOp(SramInstructionOp):
    """`sram_isa.scalar [dst Y] [src0 X] [src1 Z] n N`: N scalar operations on the SCU."""

    name = "sram_isa.scalar"
    OP: ClassVar[SramOp] = SramOp.SCALAR


@irdl_op_definition
class SignalOp(SramInstructionOp):
    """`sram_isa.signal [cores A to B] tok T`: raise token T once every earlier instruction
    of every core of the range has completed."""

    name = "sram_isa.signal"
    OP: ClassVar[SramOp] = SramOp.SIGNAL


@irdl_op_definition
class WaitOp(SramInstructionOp):
    """`sram_isa.wait [cores A to B] tok T`: later instructions of each core of the range
    issue only once token T is raised."""

    name = "sram_isa.wait"
    OP: ClassVar[SramOp] = SramOp.WAIT


@irdl_op_definition
class BarrierOp(SramInstructionOp):
    """`sram_isa.barrier [cores A to B]`: later instructions of a core issue only once its
    earlier ones have completed."""

    name = "sram_isa.barrier"
    OP: ClassVar[SramOp] = SramOp.BARRIER


@irdl_op_definition
class AllocOp(SramInstructionOp):
    """`sram_isa.alloc am dst B bytes E` / `sram_isa.alloc pim dst M rows R cols C`: declare
    buffer B of E bytes in activation memory, or PIM buffer M for an R x C FP16 matrix."""

    name = "sram_isa.alloc"
    OP: ClassVar[SramOp] = SramOp.ALLOC


@irdl_op_definition
class FreeOp(SramInstructionOp):
    """`sram_isa.free dst B`: release buffer B (activation memory or PIM)."""

    name = "sram_isa.free"
    OP: ClassVar[SramOp] = SramOp.FREE


INSTRUCTION_OPS: dict[SramOp, type[SramInstructionOp]] = {
    op.OP: op
    for op in (
        LoadOp,
        StoreOp,
        MacroWriteOp,
        MvmOp,
        StreamMvmOp,
        GemmOp,
        VcuOp,
        TransposeOp,
        AllgatherOp,
        ReduceOp,
        ScalarOp,
        SignalOp,
        WaitOp,
        BarrierOp,
        AllocOp,
        FreeOp,
    )
}


# --- the record bridge -----------------------------------------------------------------------


def program_from_ops(stream: StreamOp) -> SramProgram:
    """The record array of `stream`, for the simulator. HpimError if the stream is invalid."""
    try:
        stream.verify()
    except VerifyException as error:
        raise HpimError(str(error)) from None
    builder = ProgramBuilder()
    for op in stream.body.block.ops:
        assert isinstance(op, SramInstructionOp)
        builder.add(op.OP, op.cores(), **op.record_fields())
    return builder.build()


def ops_from_program(program: SramProgram) -> StreamOp:
    """The stream of `program`'s records (the inverse of `program_from_ops`; source lines are
    not kept). HpimError names the first record that is no valid instruction."""
    records = program.records.tolist()
    return StreamOp([_op_of_record(index, record) for index, record in enumerate(records)])


def _op_of_record(index: int, record: tuple) -> SramInstructionOp:
    fields = dict(zip(RECORD_DTYPE.names, record))
    try:
        cls = INSTRUCTION_OPS[SramOp(fields["op"])]
    except ValueError:
        raise HpimError(f"record {index}: unknown instruction kind {fields['op']}") from None
    where = f"record {index} ({cls.name})"
    kind = None
    if (enum := KINDS.get(cls.OP)) is not None:
        try:
            kind = enum(fields["kind"]).name.lower()
        except ValueError:
            names = ", ".join(f"{int(m)} {m.name.lower()}" for m in enum)
            raise HpimError(f"{where}: kind {fields['kind']} is unknown ({names})") from None
    elif fields["kind"] != 0:
        raise HpimError(f"{where}: kind {fields['kind']}: only vcu and alloc have a kind")
    sizes = [Affine(fields[f"a{i}"], fields[f"b{i}"], fields[f"d{i}"]) for i in range(MAX_SIZES)]
    names = cls.size_names(kind)
    for i in range(len(names), MAX_SIZES):
        if sizes[i] != Affine():
            raise HpimError(
                f"{where}: has no size {i} (a{i}, b{i}, d{i} must be 0, 0, 1); "
                f"its sizes are {', '.join(names) or 'none'}"
            )
    lo, hi = fields["core_lo"], fields["core_hi"]
    op = cls(
        None if (lo, hi) == (0, -1) else (lo, hi),
        kind=kind,
        **{name: fields[name] for name in INTEGER_FIELDS if fields[name] != -1},
        **dict(zip(names, sizes)),
    )
    if problem := op.problem():
        raise HpimError(f"{where}: {problem}")
    return op


SramIsa = Dialect("sram_isa", [StreamOp, *INSTRUCTION_OPS.values()], [SizeAttr])
