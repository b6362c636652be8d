"""The `.hpimasm` assembly and the hbm_isa bridge.

- The fast reader and the lark reference give the records and sections the generator meant
  on random programs of every line kind (`ctx=A/D` and `.section` directives included) with
  comments and odd spacing, and the fast path takes every line itself; random corruptions
  give both the same outcome (the same program or the same HpimError message), and
  corruptions that are always wrong raise.
- Errors name the file, line and column.
- write_asm / read_asm, streams_from_program / program_from_streams and the dialect's custom
  syntax round-trip random programs (sections included) exactly.
"""

import io
import re

import numpy as np
import pytest
from hpim_ir.dialects import hbm_isa
from hpim_ir.sim.hbm.program import RECORD_DTYPE, HbmOp, HbmProgram, Section
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer

from hpim_ir.asm import (
    asm_to_module,
    module_to_asm,
    read_asm,
    read_asm_reference,
    write_asm,
)
from hpim_ir.asm.reader import _fast_records
from hpim_ir.asm.syntax import HBM_INSTRUCTIONS, MAX_VALUE, ChannelForm
from hpim_ir.errors import HpimError
from tests.asm_support import assert_line_4_error

# --- generators ----------------------------------------------------------------------------

blanks = st.text(" \t", max_size=3)
separators = st.text(" \t", min_size=1, max_size=3)
comments = st.one_of(st.just(""), st.builds("#{}".format, st.text(st.characters(exclude_characters="\n\r"), max_size=12)))
values = st.one_of(st.integers(0, 40), st.integers(0, MAX_VALUE))
positive = st.one_of(st.integers(1, 40), st.integers(1, MAX_VALUE))


@st.composite
def instruction(draw) -> tuple[str, tuple]:
    """One instruction written with random spacing, and the record it means (line 0)."""
    syntax = draw(st.sampled_from(list(HBM_INSTRUCTIONS.values())))
    words = [syntax.mnemonic]
    lo, hi = (-1, -1) if syntax.channel is ChannelForm.NONE else (0, -1)
    has_channel = syntax.channel is not ChannelForm.NONE and (
        syntax.channel is not ChannelForm.OPTIONAL or draw(st.booleans())
    )
    if has_channel:
        lo = draw(values)
        hi = lo + 1
        if syntax.channel is ChannelForm.RANGE and draw(st.booleans()):
            hi = draw(st.integers(lo + 1, MAX_VALUE + 1))
            words.append(f"ch={_padded(draw, lo)}:{_padded(draw, hi)}")
        else:
            words.append(f"ch={_padded(draw, lo)}")
    columns = {"row": -1, "col": -1, "n": 1, "bank": -1, "per_ctx": 0, "ctx_div": 1, "ctx_off": 0}
    context = syntax.count is not None and draw(st.booleans())
    for field in syntax.fields:
        minimum = 0 if context and field == syntax.count else field.minimum
        value = draw(values.filter(lambda v, m=minimum: v >= m))
        columns[field.column] = value
        words.append(f"{field.name}={_padded(draw, value)}")
    if context:
        columns["per_ctx"], columns["ctx_div"] = draw(positive), draw(positive)
        words.append(f"ctx={_padded(draw, columns['per_ctx'])}/{_padded(draw, columns['ctx_div'])}")
        # An offset (never 0, either sign) sends the line to the lark path.
        offset = draw(st.none() | positive.map(lambda v: v * draw(st.sampled_from([-1, 1]))))
        if offset is not None:
            columns["ctx_off"] = offset
            words.append(f"off={offset}")
    text = "".join(w + draw(separators) for w in words[:-1]) + words[-1]
    record = (syntax.op, lo, hi, columns["row"], columns["col"], columns["n"], 0)
    context_columns = (columns["per_ctx"], columns["ctx_div"], columns["ctx_off"])
    return text, record + (columns["bank"], *context_columns)


@st.composite
def directive(draw) -> tuple[str, tuple]:
    """A `.section` line with random spacing, and its (name, repeat, row_stride)."""
    name = draw(st.none() | st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True))
    repeat = draw(st.none() | positive)
    row_stride = draw(st.none() | values)
    words = [".section"] + ([name] if name is not None else [])
    words += [f"repeat={_padded(draw, repeat)}"] * (repeat is not None)
    words += [f"row_stride={_padded(draw, row_stride)}"] * (row_stride is not None)
    text = "".join(w + draw(separators) for w in words[:-1]) + words[-1]
    return text, (name, repeat, row_stride)


def _padded(draw, value: int) -> str:
    """The value, sometimes with leading zeros (they stay within the fast path's 10 digits)."""
    digits = str(value)
    return "0" * draw(st.integers(0, max(0, min(2, 10 - len(digits))))) + digits


@st.composite
def programs(draw) -> tuple[str, HbmProgram]:
    """A random program text (instructions, directives, blank and comment lines, LF or CRLF,
    with or without a final newline) and the program it means (line numbers included)."""
    lines, records, directives = [], [], []
    for number in range(1, draw(st.integers(0, 25)) + 1):
        kind = draw(st.sampled_from(["instruction"] * 4 + ["blank", "comment", "directive"]))
        if kind == "instruction":
            text, record = draw(instruction())
            lines.append(draw(blanks) + text + draw(blanks) + draw(comments))
            records.append(record[:6] + (number,) + record[7:])
        elif kind == "directive":
            text, fields = draw(directive())
            lines.append(draw(blanks) + text + draw(blanks) + draw(comments))
            directives.append((len(records), fields))
        else:
            lines.append(draw(blanks) + (draw(comments) if kind == "comment" else ""))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    starts = [start for start, _ in directives] + [len(records)]
    sections = [
        Section(start, stop, *fields) for (start, fields), stop in zip(directives, starts[1:])
    ]
    if not directives or starts[0] > 0:
        sections.insert(0, Section(0, starts[0]))
    return text, HbmProgram(np.array(records, dtype=RECORD_DTYPE), tuple(sections))


def outcome(read, text: str):
    try:
        program = read(text, "prog.hpimasm")
        return program.records.tolist(), program.sections
    except HpimError as error:
        return str(error)


# --- fast path == lark path ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(programs())
def test_fast_and_reference_readers_give_the_generated_program(case) -> None:
    text, expected = case
    for read in (read_asm, read_asm_reference):
        program = read(text, "prog.hpimasm")
        assert program.records.tolist() == expected.records.tolist()
        assert program.sections == expected.sections
    # The fast path read every line itself but those with an offset: they go to lark.
    with_offset = [n for n, line in enumerate(text.split("\n"), 1) if "off=" in line.split("#")[0]]
    assert _fast_records(text)[2].tolist() == with_offset


# Edits of an instruction (the part before any comment) that always make it wrong, each with
# the message it must give.
ALWAYS_WRONG = [
    (r"^(\s*)hbm\.", r"\1hbm.nope_", "unknown instruction"),
    (r"=\d+", "=-1", "unexpected '-1"),
    (r"=\d+", "=x", "unexpected 'x"),
    (r"=\d+", f"={MAX_VALUE + 1}", f"must be at most {MAX_VALUE}"),
    (r"=\d+", "=123456789012", f"must be at most {MAX_VALUE}"),
    (r"\s+\w+=\d+(:\d+)?", "", "unexpected"),
    (r"(\w+=\d+)", r"\1 \1", "unexpected"),
    (r"$", " extra", "unexpected 'extra'"),
]


@settings(max_examples=200, deadline=None)
@given(programs(), st.data())
def test_corruptions_give_the_same_outcome_on_both_paths(case, data) -> None:
    text, program = case
    records = program.records
    lines = text.split("\n")
    number = data.draw(st.integers(1, len(lines)))
    line = lines[number - 1]
    if data.draw(st.booleans()):
        # A random character anywhere: the result may even be valid; both paths must agree.
        at = data.draw(st.integers(0, len(line)))
        line = line[:at] + data.draw(st.sampled_from(list(" \t=:#x-0.9\r"))) + line[at:]
        lines[number - 1] = line
        corrupted = "\n".join(lines)
        assert outcome(read_asm, corrupted) == outcome(read_asm_reference, corrupted)
        return
    if int(number) not in set(records["line"].tolist()):
        return
    pattern, replacement, message = data.draw(st.sampled_from(ALWAYS_WRONG))
    code, *_ = [r for r in records.tolist() if r[6] == number][0]
    if pattern.startswith(r"\s+\w+") and code == HbmOp.BARRIER:
        return  # `hbm.barrier ch=C` without its channel is still a barrier
    code, hash_sign, comment = line.removesuffix("\r").partition("#")
    code, count = re.subn(pattern, replacement, code, count=1)
    if not count:
        return  # e.g. a barrier without fields has no `=value` to corrupt
    lines[number - 1] = code + hash_sign + comment
    corrupted = "\n".join(lines)
    fast, reference = outcome(read_asm, corrupted), outcome(read_asm_reference, corrupted)
    assert fast == reference
    assert isinstance(fast, str) and fast.startswith(f"prog.hpimasm:{number}:"), fast
    assert message in fast


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        ("hbm.wr_gb ch=1 row=2", 16, "unexpected 'row=2'; expected 'col='"),
        ("hbm.pre_ab ch=1 col=3", 17, "unexpected 'col=3'; expected 'part=' or end of line"),
        ("hbm.wr_gb ch=1:2 col=2", 15, "unexpected ':2'; expected a space"),
        ("  hbm.wr_gbx ch=1 col=2", 3, "unknown instruction 'hbm.wr_gbx'"),
        ("sram.lode core=1", 1, "unknown instruction 'sram.lode'"),
        ("hbm.pre_ab", 11, "unexpected end of line; expected a space"),
        ("hbm.barrier\tch=x", 16, "unexpected 'x'; expected a non-negative integer"),
        ("hbm.gemv ch=3:3 row=0 rows=1 cols=1", 13, "channel range 3:3 is empty"),
        ("hbm.gemv ch=3 row=0 rows=0 cols=1", 26, "rows must be at least 1, got 0"),
        ("hbm.readout ch=0:2 n=0", 22, "n must be at least 1, got 0"),
        ("hbm.load_gb ch=0 cols=0 # x", 23, "cols must be at least 1, got 0"),
        ("hbm.rd ch=0 bank=1 col=2", 20, "unexpected 'col=2'; expected 'row='"),
        ("hbm.read ch=0:2 row=1 rows=0 cols=4", 28, "rows must be at least 1, got 0"),
        ("hbm.read ch=0:2 row=1 rows=0 cols=4 ctx=0/2", 41, "per_ctx must be at least 1, got 0"),
        ("hbm.gemv ch=0 row=1 rows=0 cols=4 ctx=1/0", 41, "ctx_div must be at least 1, got 0"),
        ("hbm.readout ch=0 n=1 ctx=1", 27, "unexpected end of line; expected '/'"),
        ("hbm.load_gb ch=0 cols=4 ctx=1/2", 25, "unexpected 'ctx=1/2'; expected 'part=' or end of line"),
        (".section x repeat=0", 19, "repeat must be at least 1, got 0"),
        (".section x y", 12, "unexpected 'y'; expected 'repeat=' or 'row_stride='"),
        (".section row_stride=1 repeat=2", 23, "unexpected 'repeat=2'; expected end of line"),
        (".sections", 1, "unknown directive '.sections'"),
    ],
)
def test_errors_name_line_column_found_and_expected(line: str, column: int, message: str) -> None:
    text = "# header\n\nhbm.barrier\n" + line + "\nhbm.barrier\n"
    assert_line_4_error(text, line, column, message)


def test_the_first_bad_line_is_reported() -> None:
    text = "hbm.barrier\nhbm.pre_ab ch=x\nhbm.pre_ab ch=y\n"
    with pytest.raises(HpimError, match=r"^f:2:15: unexpected 'x'"):
        read_asm(text, "f")


def test_empty_and_comment_only_texts_are_empty_programs() -> None:
    for text in ("", "\n", "# nothing\n   \n\t# more"):
        assert len(read_asm(text)) == 0 and len(read_asm_reference(text)) == 0


# --- writing -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(programs())
def test_write_then_read_gives_the_program_back(case) -> None:
    text, program = case
    written = write_asm(read_asm(text))
    again = read_asm(written)
    fields = [name for name in RECORD_DTYPE.names if name != "line"]
    assert again.records[fields].tolist() == program.records[fields].tolist()
    assert again.sections == program.sections
    assert write_asm(again) == written  # canonical text is a fixed point


def test_canonical_spelling() -> None:
    text = (
        "  hbm.gemv\tch=02:3  row=1 rows=2 cols=3 # tile\nhbm.readout ch=0:16 n=4\n"
        "hbm.barrier ch=5\n.section  layers   repeat=02 # body\nhbm.read ch=0 row=3 rows=0"
        " cols=32 ctx=01/8\n"
    )
    assert write_asm(read_asm(text)) == (
        "hbm.gemv ch=2 row=1 rows=2 cols=3\nhbm.readout ch=0:16 n=4\nhbm.barrier ch=5\n"
        ".section layers repeat=2\nhbm.read ch=0 row=3 rows=0 cols=32 ctx=1/8\n"
    )


@pytest.mark.parametrize(
    ("sections", "text"),
    [
        # No directive: one plain section, written bare (even when empty).
        ([Section(0, 1)], "hbm.barrier\n"),
        ([Section(0, 0)], ""),
        # A first plain section is bare unless it is empty and others follow.
        ([Section(0, 1), Section(1, 1, "x")], "hbm.barrier\n.section x\n"),
        ([Section(0, 0), Section(0, 1, "x")], ".section\n.section x\nhbm.barrier\n"),
        ([Section(0, 1, None, 2)], ".section repeat=2\nhbm.barrier\n"),
        ([Section(0, 0), Section(0, 1)], ".section\n.section\nhbm.barrier\n"),
    ],
)
def test_sections_are_written_so_that_they_read_back(sections, text) -> None:
    records = [(HbmOp.BARRIER, 0, -1, -1, -1, 1, 0)] * sections[-1].stop
    program = HbmProgram(HbmProgram.from_rows(records).records, tuple(sections))
    assert write_asm(program) == text
    for read in (read_asm, read_asm_reference):
        assert read(text).sections == tuple(sections)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((42, 0, 1, -1, -1, 1, 0), "record 1: unknown instruction kind 42"),
        ((HbmOp.WR_GB, 0, 4, -1, 3, 1, 0), "record 1 (hbm.wr_gb): takes one channel, not 0:4"),
        ((HbmOp.GEMV, 0, 4, 0, 3, 0, 0), "record 1 (hbm.gemv): rows must be at least 1, got 0"),
        ((HbmOp.MAC_AB, 1, 2, -1, 3, 1, 0), "record 1 (hbm.mac_ab): row must be non-negative, got -1"),
        ((HbmOp.LOAD_GB, 5, 5, -1, 3, 1, 0), "record 1 (hbm.load_gb): channel range 5:5 is empty"),
        ((HbmOp.RD, 0, 1, 0, 3, 1, 0, -2), "record 1 (hbm.rd): bank must be non-negative, got -2"),
        ((HbmOp.LOAD_GB, 0, 1, -1, 3, 1, 0, -1, 2, 1), "record 1 (hbm.load_gb): takes no ctx="),
        ((HbmOp.READ, 0, 1, 0, 3, 0, 0, -1, 0, 4),
         "record 1 (hbm.read): per_ctx must be at least 1, got 0"),
        ((HbmOp.READ, 0, 1, 0, 3, 0, 0, -1, 1, 0),
         "record 1 (hbm.read): ctx_div must be at least 1, got 0"),
    ],
)
def test_writing_and_bridging_bad_records_name_the_record(row: tuple, message: str) -> None:
    program = HbmProgram.from_rows([(HbmOp.BARRIER, 0, -1, -1, -1, 1, 0), row])
    for convert in (write_asm, hbm_isa.streams_from_program):
        with pytest.raises(HpimError) as error:
            convert(program)
        assert str(error.value) == message


def test_a_section_name_assembly_cannot_spell_is_an_error() -> None:
    program = HbmProgram(HbmProgram.from_rows([]).records, (Section(0, 0, "two words"),))
    with pytest.raises(HpimError, match="section 0: section name 'two words' must be a letter"):
        write_asm(program)


# --- the dialect bridge --------------------------------------------------------------------


def test_ops_give_the_records_of_their_semantics() -> None:
    # Hand-written: (op, ch_lo, ch_hi, row, col, n, line, bank, per_ctx, ctx_div, ctx_off) per
    # program.py's layout.
    stream = hbm_isa.StreamOp(
        [
            hbm_isa.WrGbOp(ch=3, col=5),
            hbm_isa.MacAbOp(ch=3, row=12, col=5),
            hbm_isa.ActAbOp(ch=0, row=7),
            hbm_isa.PreAbOp(ch=0),
            hbm_isa.RdOutOp(ch=1),
            hbm_isa.BarrierOp(),
            hbm_isa.BarrierOp(ch=2),
            hbm_isa.SignalOp(tok=4),
            hbm_isa.WaitOp(tok=0),
            hbm_isa.GemvOp(ch_lo=0, ch_hi=16, row=2, rows=4, cols=32),
            hbm_isa.LoadGbOp(ch_lo=4, ch_hi=8, cols=32),
            hbm_isa.ReadoutOp(ch_lo=15, ch_hi=16, n=8),
            hbm_isa.ActOp(ch=2, bank=63, row=9),
            hbm_isa.PreOp(ch=2, bank=5),
            hbm_isa.RdOp(ch=1, bank=3, row=4, col=31),
            hbm_isa.WrOp(ch=1, bank=3, row=4, col=0),
            hbm_isa.RdaOp(ch=1, bank=7, row=8, col=1),
            hbm_isa.WraOp(ch=1, bank=7, row=8, col=2),
            hbm_isa.ReadOp(ch_lo=0, ch_hi=16, row=100, rows=0, cols=32, per_ctx=1, ctx_div=8),
            hbm_isa.WriteOp(ch_lo=3, ch_hi=4, row=6, rows=2, cols=16),
            hbm_isa.GemvOp(ch_lo=0, ch_hi=2, row=2, rows=1, cols=4, per_ctx=3, ctx_div=2),
            hbm_isa.ReadOp(
                ch_lo=0, ch_hi=16, row=100, rows=0, cols=8, per_ctx=1, ctx_div=32, ctx_off=-8
            ),
        ]
    )
    assert hbm_isa.program_from_streams([stream]).records.tolist() == [
        (HbmOp.WR_GB, 3, 4, -1, 5, 1, 0, -1, 0, 1, 0),
        (HbmOp.MAC_AB, 3, 4, 12, 5, 1, 0, -1, 0, 1, 0),
        (HbmOp.ACT_AB, 0, 1, 7, -1, 1, 0, -1, 0, 1, 0),
        (HbmOp.PRE_AB, 0, 1, -1, -1, 1, 0, -1, 0, 1, 0),
        (HbmOp.RD_OUT, 1, 2, -1, -1, 1, 0, -1, 0, 1, 0),
        (HbmOp.BARRIER, 0, -1, -1, -1, 1, 0, -1, 0, 1, 0),
        (HbmOp.BARRIER, 2, 3, -1, -1, 1, 0, -1, 0, 1, 0),
        (HbmOp.SIGNAL, -1, -1, -1, -1, 4, 0, -1, 0, 1, 0),
        (HbmOp.WAIT, -1, -1, -1, -1, 0, 0, -1, 0, 1, 0),
        (HbmOp.GEMV, 0, 16, 2, 32, 4, 0, -1, 0, 1, 0),
        (HbmOp.LOAD_GB, 4, 8, -1, 32, 1, 0, -1, 0, 1, 0),
        (HbmOp.READOUT, 15, 16, -1, -1, 8, 0, -1, 0, 1, 0),
        (HbmOp.ACT, 2, 3, 9, -1, 1, 0, 63, 0, 1, 0),
        (HbmOp.PRE, 2, 3, -1, -1, 1, 0, 5, 0, 1, 0),
        (HbmOp.RD, 1, 2, 4, 31, 1, 0, 3, 0, 1, 0),
        (HbmOp.WR, 1, 2, 4, 0, 1, 0, 3, 0, 1, 0),
        (HbmOp.RDA, 1, 2, 8, 1, 1, 0, 7, 0, 1, 0),
        (HbmOp.WRA, 1, 2, 8, 2, 1, 0, 7, 0, 1, 0),
        (HbmOp.READ, 0, 16, 100, 32, 0, 0, -1, 1, 8, 0),
        (HbmOp.WRITE, 3, 4, 6, 16, 2, 0, -1, 0, 1, 0),
        (HbmOp.GEMV, 0, 2, 2, 4, 1, 0, -1, 3, 2, 0),
        (HbmOp.READ, 0, 16, 100, 8, 0, 0, -1, 1, 32, -8),
    ]


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (hbm_isa.GemvOp(ch_lo=0, ch_hi=16, row=0, rows=0, cols=32), "rows must be at least 1"),
        (hbm_isa.ReadOp(ch_lo=0, ch_hi=1, row=0, rows=0, cols=8, per_ctx=1), "per_ctx and ctx_div"),
        (
            hbm_isa.ReadOp(ch_lo=0, ch_hi=1, row=0, rows=1, cols=8, ctx_off=-2),
            r"ctx_off -2 needs a ctx= term \(per_ctx and ctx_div\)",
        ),
        (
            hbm_isa.ReadoutOp(ch_lo=0, ch_hi=1, n=0, per_ctx=1, ctx_div=4, ctx_off=0),
            r"ctx_off must not be 0 \(a count without an offset leaves it out\)",
        ),
    ],
)
def test_program_from_an_invalid_stream_is_an_error(op, message) -> None:
    with pytest.raises(HpimError, match=f"'{op.name}': {message}"):
        hbm_isa.program_from_streams([hbm_isa.StreamOp([op])])


def _context() -> Context:
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(hbm_isa.HbmIsa)
    return ctx


@settings(max_examples=60, deadline=None)
@given(programs(), st.booleans())
def test_streams_round_trip_through_records_and_both_printed_forms(case, generic: bool) -> None:
    text, expected = case
    program = read_asm(text)
    streams = hbm_isa.streams_from_program(program)
    for stream in streams:
        stream.verify()
    again = hbm_isa.program_from_streams(streams)
    unnumbered = expected.records.copy()
    unnumbered["line"] = 0
    assert again.records.tolist() == unnumbered.tolist()
    assert again.sections == expected.sections
    printed = io.StringIO()
    Printer(stream=printed, print_generic_format=generic).print_op(ModuleOp(streams))
    parsed = Parser(_context(), printed.getvalue()).parse_module()
    assert module_to_asm(parsed) == write_asm(program)


def test_asm_module_round_trip() -> None:
    text = (
        "hbm.load_gb ch=0:16 cols=32\n.section layers repeat=48 row_stride=328\n"
        "hbm.gemv ch=0:16 row=0 rows=4 cols=32\nhbm.read ch=0:16 row=100 rows=0 cols=32 ctx=1/8\n"
        ".section tail\nhbm.signal tok=1\n"
    )
    module = asm_to_module(text)
    module.verify()
    streams = list(module.ops)
    assert [len(list(stream.body.block.ops)) for stream in streams] == [1, 2, 1]
    assert streams[1].repeat_count == 48 and streams[1].row_stride_value == 328
    assert streams[2].section.data == "tail" and streams[2].repeat is None
    assert module_to_asm(module) == text


def test_module_to_asm_needs_a_stream() -> None:
    with pytest.raises(HpimError, match="no hbm_isa.stream or sram_isa.stream in the module"):
        module_to_asm(ModuleOp([]))
