"""The `hbm_isa` dialect: the HBM-PIM controller's instruction stream.

An `hbm_isa.stream` holds one stream in program order (a compiled program has one per
section: prologue, repeated decoder layers, epilogue). Its instructions come at two levels
(docs/dialects/hbm_isa.md has the rationale):

- raw commands, one DRAM command on one channel each: the all-bank PIM commands (`wr_gb`,
  `mac_ab`, `act_ab`, `pre_ab`, `rd_out`), the single-bank normal-mode commands (`act`, `pre`,
  `rd`, `wr`, `rda`, `wra`) and `barrier`, for micro-benchmarks and timing tests;
- macro-instructions (`gemv`, `load_gb`, `readout`; `read`, `write` in normal mode), one op
  for a whole tile on a channel range `ch A to B` (half-open, as `scf.for`), which is what
  compiled programs use: a model never becomes one op per DRAM command. The count of `gemv`,
  `read`, `write` (rows) and `readout` (bursts) may grow with the context length: with
  `ctx P / D` (properties `per_ctx`, `ctx_div`) it is the count plus ceil(P * ctx / D), and
  with `ctx P / D off Q` (property `ctx_off`, never 0) the count plus max(0, ceil((P * ctx +
  Q) / D)): one exact share of a count cut in pieces (`split_count` in
  `hpim_ir.sim.hbm.program`), as the pieces a KV cache's context streams in.

`signal` / `wait` synchronize with the SRAM-PIM stream through integer tokens. Every field is
an i64 property, not an SSA value: these are instruction fields fixed at compile time, and the
property names are the field names of the `.hpimasm` assembly (`hpim_ir.asm.syntax` maps both
onto the simulator's record columns). Verifiers check what needs no hardware (values
non-negative, counts positive, channel ranges non-empty); bounds such as `row < rows of the
machine` are checked against the hardware description when the program is simulated.

The exact semantics of each instruction, a macro given as the raw sequence it stands for, are
on `HbmOp` in `hpim_ir.sim.hbm.program`. `program_from_streams` and `streams_from_program`
convert a module's streams to and from the `HbmProgram` record array (with its sections) that
the simulator consumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from xdsl.dialects.builtin import I64, IntegerAttr, StringAttr, i64
from xdsl.ir import Attribute, Block, Dialect, Operation, Region
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, NoTerminator
from xdsl.utils.exceptions import VerifyException

from hpim_ir.asm.syntax import (
    CONTEXT_FIELDS,
    CONTEXT_OFFSET,
    HBM_BY_MNEMONIC,
    Channels,
    ChannelForm,
    InstructionSyntax,
    fields_of_record,
    instruction_problem,
    record_of_fields,
    section_problem,
)
from hpim_ir.dialects.interned import int_attr
from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.program import RECORD_DTYPE, HbmOp, HbmProgram, Section


# --- the stream ------------------------------------------------------------------------------


class SectionStreamBase(IRDLOperation):
    """What the instruction streams of both subsystems share (`hbm_isa.stream`,
    `sram_isa.stream`): a single-block region of instructions in program order, the section
    it belongs to, how many times it repeats, and a custom syntax in which an empty stream
    keeps its block."""

    body = region_def("single_block")
    section = opt_prop_def(StringAttr)
    repeat = opt_prop_def(IntegerAttr[I64])
    traits = traits_def(NoTerminator())

    def __init__(
        self,
        instructions: Sequence[Operation] = (),
        attributes: dict[str, Attribute] | None = None,
        section: str | None = None,
        repeat: int | None = None,
        **numbers: int | None,
    ):
        """`numbers` are the subclass's other integer properties (`row_stride`)."""
        properties = {"section": StringAttr(section) if section is not None else None}
        for name, value in {"repeat": repeat, **numbers}.items():
            properties[name] = IntegerAttr(value, i64) if value is not None else None
        super().__init__(
            regions=[Region(Block(instructions))], attributes=attributes, properties=properties
        )

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        # Custom rather than declarative: `{ }` parses as a region without blocks, and an
        # empty stream still has its one (empty) block, as `builtin.module` does.
        entries = parser.parse_optional_attr_dict_with_keyword()
        entries = dict(entries.data) if entries else {}
        names = cls.get_irdl_definition().properties
        body = parser.parse_region()
        if not body.blocks:
            body.add_block(Block())
        return cls.create(
            regions=[body],
            properties={k: v for k, v in entries.items() if k in names},
            attributes={k: v for k, v in entries.items() if k not in names},
        )

    def print(self, printer: Printer) -> None:
        printer.print_op_attributes({**self.properties, **self.attributes}, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_empty_block=False)

    @property
    def repeat_count(self) -> int:
        return self.repeat.value.data if self.repeat is not None else 1

    def verify_stream(self, instruction: type[Operation], dialect: str) -> None:
        """Only `instruction`s in the block, and a repeat of at least 1."""
        for op in self.body.block.ops:
            if not isinstance(op, instruction):
                raise VerifyException(f"'{self.name}': '{op.name}' is not an {dialect} instruction")
        if self.repeat_count < 1:
            raise VerifyException(f"'{self.name}': repeat must be at least 1, got {self.repeat_count}")


@irdl_op_definition
class StreamOp(SectionStreamBase):
    """`hbm_isa.stream { ... }`: one HBM-PIM instruction stream; its block holds only
    `hbm_isa` instructions, in the order the controller issues them.

    A compiled program is a sequence of sections (the prologue, the decoder layers, the
    epilogue), each a stream per subsystem. A section's stream may be `repeat`ed: iteration `l`
    runs the block with every DRAM row moved on by `l * row_stride` (the layer-major weight
    layout of `pim-tile-hbm`), so the layers' instructions exist once. `section` names the
    section for people and tools."""

    name = "hbm_isa.stream"
    row_stride = opt_prop_def(IntegerAttr[I64])

    @property
    def row_stride_value(self) -> int:
        return self.row_stride.value.data if self.row_stride is not None else 0

    def verify_(self) -> None:
        self.verify_stream(HbmInstructionOp, "hbm_isa")
        if self.row_stride_value < 0:
            raise VerifyException(
                f"'{self.name}': row_stride must be non-negative, got {self.row_stride_value}"
            )
        if self.section is not None and (problem := section_problem(self.section.data, None, None)):
            raise VerifyException(f"'{self.name}': {problem}")


class HbmInstructionOp(IRDLOperation):
    """An instruction of an `hbm_isa.stream`: op `hbm_isa.X` is assembly instruction `hbm.X`.

    A channel is the property `ch` (raw commands; optional on `barrier`), a channel range the
    properties `ch_lo`, `ch_hi` (macro-instructions); the other properties are the fields of
    the instruction's `InstructionSyntax`. Constructed with those properties as integers,
    e.g. `GemvOp(ch_lo=0, ch_hi=16, row=0, rows=4, cols=32)`.
    """

    traits = traits_def(HasParent(StreamOp))

    def __init__(self, **fields: int):
        super().__init__(properties={name: int_attr(v) for name, v in fields.items()})

    @classmethod
    def syntax(cls) -> InstructionSyntax:
        return HBM_BY_MNEMONIC["hbm." + cls.name.removeprefix("hbm_isa.")]

    def channels(self) -> Channels:
        """The half-open channel range, or None (no channel, or every channel)."""
        if self.syntax().channel is ChannelForm.RANGE:
            return (self._value("ch_lo"), self._value("ch_hi"))
        if "ch" not in self.properties:
            return None
        return (self._value("ch"), self._value("ch") + 1)

    def values(self) -> dict[str, int]:
        """The fields after the channel, by name, and `per_ctx`, `ctx_div`, `ctx_off` when
        given."""
        values = {field.name: self._value(field.name) for field in self.syntax().fields}
        context = (*CONTEXT_FIELDS, CONTEXT_OFFSET)
        values.update({n: self._value(n) for n in context if n in self.properties})
        return values

    def record(self) -> tuple:
        """This instruction as an `HbmProgram` record (line 0: the IR has no source line)."""
        return record_of_fields(self.syntax(), self.channels(), self.values())

    @classmethod
    def from_fields(cls, channels: Channels, values: dict[str, int]) -> Self:
        """The op with these channels and fields (the inverse of `channels` / `values`)."""
        if channels is None:
            return cls(**values)
        if cls.syntax().channel is ChannelForm.RANGE:
            return cls(ch_lo=channels[0], ch_hi=channels[1], **values)
        return cls(ch=channels[0], **values)

    def verify_(self) -> None:
        given = [name for name in CONTEXT_FIELDS if name in self.properties]
        if len(given) == 1:
            raise VerifyException(f"'{self.name}': per_ctx and ctx_div go together")
        problem = instruction_problem(self.syntax(), self.channels(), self.values(), "{} to {}")
        if problem:
            raise VerifyException(f"'{self.name}': {problem}")

    def _value(self, name: str) -> int:
        attr = self.properties[name]
        assert isinstance(attr, IntegerAttr)
        return attr.value.data


# --- raw commands ----------------------------------------------------------------------------


@irdl_op_definition
class WrGbOp(HbmInstructionOp):
    """`hbm_isa.wr_gb ch C col K`: write 32 B of the input vector into slot K of channel C's
    global buffer."""

    name = "hbm_isa.wr_gb"
    ch = prop_def(IntegerAttr[I64])
    col = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch `col` $col attr-dict"


@irdl_op_definition
class MacAbOp(HbmInstructionOp):
    """`hbm_isa.mac_ab ch C row R col K`: every bank of channel C multiplies column K of row R
    with global-buffer slot K and accumulates. The controller opens row R first if it is not
    open."""

    name = "hbm_isa.mac_ab"
    ch = prop_def(IntegerAttr[I64])
    row = prop_def(IntegerAttr[I64])
    col = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch `row` $row `col` $col attr-dict"


@irdl_op_definition
class ActAbOp(HbmInstructionOp):
    """`hbm_isa.act_ab ch C row R`: activate row R in all banks of channel C."""

    name = "hbm_isa.act_ab"
    ch = prop_def(IntegerAttr[I64])
    row = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch `row` $row attr-dict"


@irdl_op_definition
class PreAbOp(HbmInstructionOp):
    """`hbm_isa.pre_ab ch C`: precharge all banks of channel C."""

    name = "hbm_isa.pre_ab"
    ch = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch attr-dict"


@irdl_op_definition
class RdOutOp(HbmInstructionOp):
    """`hbm_isa.rd_out ch C`: read 32 B of accumulated results out of channel C's bank PUs."""

    name = "hbm_isa.rd_out"
    ch = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch attr-dict"


@irdl_op_definition
class BarrierOp(HbmInstructionOp):
    """`hbm_isa.barrier [ch C]`: later commands of channel C (without `ch`: of every channel)
    wait until the earlier ones have completed."""

    name = "hbm_isa.barrier"
    ch = opt_prop_def(IntegerAttr[I64])
    assembly_format = "(`ch` $ch^)? attr-dict"


@irdl_op_definition
class ActOp(HbmInstructionOp):
    """`hbm_isa.act ch C bank B row R`: activate row R in bank B of channel C (normal mode;
    bank numbers in `hpim_ir.sim.hbm.normal`)."""

    name = "hbm_isa.act"
    ch = prop_def(IntegerAttr[I64])
    bank = prop_def(IntegerAttr[I64])
    row = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch `bank` $bank `row` $row attr-dict"


@irdl_op_definition
class PreOp(HbmInstructionOp):
    """`hbm_isa.pre ch C bank B`: precharge bank B of channel C."""

    name = "hbm_isa.pre"
    ch = prop_def(IntegerAttr[I64])
    bank = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch `bank` $bank attr-dict"


class _ColumnAccessOp(HbmInstructionOp):
    """A normal-mode column access `ch C bank B row R col K` to one bank; the controller
    opens row R of the bank first if it is not open."""

    ch = prop_def(IntegerAttr[I64])
    bank = prop_def(IntegerAttr[I64])
    row = prop_def(IntegerAttr[I64])
    col = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch `bank` $bank `row` $row `col` $col attr-dict"


@irdl_op_definition
class RdOp(_ColumnAccessOp):
    """`hbm_isa.rd ch C bank B row R col K`: read column K of row R of bank B to the host."""

    name = "hbm_isa.rd"


@irdl_op_definition
class WrOp(_ColumnAccessOp):
    """`hbm_isa.wr ch C bank B row R col K`: write column K of row R of bank B from the host."""

    name = "hbm_isa.wr"


@irdl_op_definition
class RdaOp(_ColumnAccessOp):
    """`hbm_isa.rda ch C bank B row R col K`: `rd` with auto-precharge: the bank closes itself
    as soon as the read allows."""

    name = "hbm_isa.rda"


@irdl_op_definition
class WraOp(_ColumnAccessOp):
    """`hbm_isa.wra ch C bank B row R col K`: `wr` with auto-precharge."""

    name = "hbm_isa.wra"


# --- sync ------------------------------------------------------------------------------------


@irdl_op_definition
class SignalOp(HbmInstructionOp):
    """`hbm_isa.signal tok T`: raise token T once every earlier command has completed."""

    name = "hbm_isa.signal"
    tok = prop_def(IntegerAttr[I64])
    assembly_format = "`tok` $tok attr-dict"


@irdl_op_definition
class WaitOp(HbmInstructionOp):
    """`hbm_isa.wait tok T`: later commands wait until token T is raised by the other stream."""

    name = "hbm_isa.wait"
    tok = prop_def(IntegerAttr[I64])
    assembly_format = "`tok` $tok attr-dict"


# --- macro-instructions ----------------------------------------------------------------------

_CONTEXT_FORMAT = "(`ctx` $per_ctx^ `/` $ctx_div)? (`off` $ctx_off^)? attr-dict"
"""The optional `ctx P / D [off Q]` of a macro whose count may grow with the context length."""


@irdl_op_definition
class GemvOp(HbmInstructionOp):
    """`hbm_isa.gemv ch A to B row R rows N cols K [ctx P / D [off Q]]`: on each channel of
    [A, B), a GEMV tile streamed over N rows from row R and K columns of all banks: `mac_ab
    row r col k` for r in R..R+N-1, k in 0..K-1. With `ctx`, N grows by ceil(P * ctx / D)
    (with `off`: max(0, ceil((P * ctx + Q) / D))) and may be 0 without it: the rows of a KV
    cache a step attends to."""

    name = "hbm_isa.gemv"
    ch_lo = prop_def(IntegerAttr[I64])
    ch_hi = prop_def(IntegerAttr[I64])
    row = prop_def(IntegerAttr[I64])
    rows = prop_def(IntegerAttr[I64])
    cols = prop_def(IntegerAttr[I64])
    per_ctx = opt_prop_def(IntegerAttr[I64])
    ctx_div = opt_prop_def(IntegerAttr[I64])
    ctx_off = opt_prop_def(IntegerAttr[I64])
    assembly_format = (
        "`ch` $ch_lo `to` $ch_hi `row` $row `rows` $rows `cols` $cols " + _CONTEXT_FORMAT
    )


@irdl_op_definition
class LoadGbOp(HbmInstructionOp):
    """`hbm_isa.load_gb ch A to B cols K`: fill global-buffer slots 0..K-1 of each channel of
    [A, B) with the input vector (`wr_gb col k` for k in 0..K-1)."""

    name = "hbm_isa.load_gb"
    ch_lo = prop_def(IntegerAttr[I64])
    ch_hi = prop_def(IntegerAttr[I64])
    cols = prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch_lo `to` $ch_hi `cols` $cols attr-dict"


@irdl_op_definition
class ReadoutOp(HbmInstructionOp):
    """`hbm_isa.readout ch A to B n N [ctx P / D [off Q]]`: read N x 32 B of results out of
    each channel of [A, B) (N x `rd_out`); with `ctx`, N grows by ceil(P * ctx / D) (with
    `off`: max(0, ceil((P * ctx + Q) / D)))."""

    name = "hbm_isa.readout"
    ch_lo = prop_def(IntegerAttr[I64])
    ch_hi = prop_def(IntegerAttr[I64])
    n = prop_def(IntegerAttr[I64])
    per_ctx = opt_prop_def(IntegerAttr[I64])
    ctx_div = opt_prop_def(IntegerAttr[I64])
    ctx_off = opt_prop_def(IntegerAttr[I64])
    assembly_format = "`ch` $ch_lo `to` $ch_hi `n` $n " + _CONTEXT_FORMAT


class _StreamMacroOp(HbmInstructionOp):
    """A normal-mode macro `ch A to B row R rows N cols K [ctx P / D [off Q]]` over columns
    0..K-1 of rows R..R+N-1 of every bank of each channel of [A, B), in the order of
    `hpim_ir.sim.hbm.normal` (bank groups and pseudo-channels interleaved, rows opened
    ahead); with `ctx`, N grows by ceil(P * ctx / D) (with `off`: max(0, ceil((P * ctx + Q)
    / D))) and may be 0 without it."""

    ch_lo = prop_def(IntegerAttr[I64])
    ch_hi = prop_def(IntegerAttr[I64])
    row = prop_def(IntegerAttr[I64])
    rows = prop_def(IntegerAttr[I64])
    cols = prop_def(IntegerAttr[I64])
    per_ctx = opt_prop_def(IntegerAttr[I64])
    ctx_div = opt_prop_def(IntegerAttr[I64])
    ctx_off = opt_prop_def(IntegerAttr[I64])
    assembly_format = (
        "`ch` $ch_lo `to` $ch_hi `row` $row `rows` $rows `cols` $cols " + _CONTEXT_FORMAT
    )


@irdl_op_definition
class ReadOp(_StreamMacroOp):
    """`hbm_isa.read ch A to B row R rows N cols K [ctx P / D [off Q]]`: read the data to the
    host (an embedding row, the cached K / V streamed to the SRAM-PIM cores)."""

    name = "hbm_isa.read"


@irdl_op_definition
class WriteOp(_StreamMacroOp):
    """`hbm_isa.write ch A to B row R rows N cols K [ctx P / D [off Q]]`: write it from the
    host (a token's K and V appended to a KV cache)."""

    name = "hbm_isa.write"


INSTRUCTION_OPS: dict[HbmOp, type[HbmInstructionOp]] = {
    op.syntax().op: op
    for op in (
        WrGbOp,
        MacAbOp,
        ActAbOp,
        PreAbOp,
        RdOutOp,
        BarrierOp,
        SignalOp,
        WaitOp,
        GemvOp,
        LoadGbOp,
        ReadoutOp,
        ActOp,
        PreOp,
        RdOp,
        WrOp,
        RdaOp,
        WraOp,
        ReadOp,
        WriteOp,
    )
}


def program_from_streams(streams: Sequence[StreamOp]) -> HbmProgram:
    """The program of `streams` in order, one section each (`section`, `repeat`, `row_stride`
    as given), for the simulator. HpimError if a stream is invalid."""
    records, sections = [], []
    for stream in streams:
        try:
            stream.verify()
        except VerifyException as error:
            raise HpimError(str(error)) from None
        start = len(records)
        records += [op.record() for op in stream.body.block.ops]
        sections.append(
            Section(
                start,
                len(records),
                stream.section.data if stream.section is not None else None,
                stream.repeat.value.data if stream.repeat is not None else None,
                stream.row_stride.value.data if stream.row_stride is not None else None,
            )
        )
    return HbmProgram(np.array(records, dtype=RECORD_DTYPE), tuple(sections))


def streams_from_program(program: HbmProgram) -> list[StreamOp]:
    """One stream per section of `program`; HpimError names a record that is no instruction."""
    records = program.records.tolist()
    streams = []
    for section in program.sections:
        ops = []
        for index in range(section.start, section.stop):
            syntax, channels, values = fields_of_record(records[index], index)
            ops.append(INSTRUCTION_OPS[syntax.op].from_fields(channels, values))
        fields = {"repeat": section.repeat, "row_stride": section.row_stride}
        streams.append(StreamOp(ops, section=section.name, **fields))
    return streams


HbmIsa = Dialect("hbm_isa", [StreamOp, *INSTRUCTION_OPS.values()], [])
