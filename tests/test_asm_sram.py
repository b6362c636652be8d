"""The `.hpimasm` assembly of mixed programs: `sram.*` lines, both streams in each section,
`part=` tags.

- Random mixed programs (every SRAM-PIM instruction form, symbolic sizes, sections, parts)
  written and read back give identical records, sections and parts on the fast reader and
  the lark reference; the canonical text is a fixed point. With random blanks and comments,
  and under random corruptions, both readers give the same outcome.
- Errors in SRAM-PIM lines name the line and column.
- MLIR -> asm -> MLIR -> asm is exact on the example and on a compiled decode step, and the
  assembly simulates to the same result as the MLIR (parts included).
"""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from hpim_ir.dialects import sram_isa
from hpim_ir.sim.hbm.program import RECORD_DTYPE as HBM_RECORD_DTYPE
from hpim_ir.sim.hbm.program import HbmProgram, Section
from hpim_ir.sim.program import MachineProgram, MachineSection, read_program
from hpim_ir.sim.scheduler import simulate_machine
from hpim_ir.sim.sram.program import FORMS, Affine, Space, SramOp, VcuFn
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.printer import Printer

from hpim_ir.asm import (
    asm_to_module,
    module_to_asm,
    read_asm,
    read_asm_reference,
    write_asm,
)
from hpim_ir.asm.reader import _parser
from hpim_ir.asm.syntax import (
    HBM_INSTRUCTIONS,
    ChannelForm,
    record_of_fields,
    size_of_text,
    size_text,
)
from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.opt import parse_module_text
from hpim_ir.simulate import CompileOptions, compile_module
from tests.asm_support import assert_line_4_error

EXAMPLE = Path(__file__).parent.parent / "examples" / "attention_head.mlir"

# --- generators ----------------------------------------------------------------------------

sizes = st.one_of(
    st.integers(1, 4096).map(Affine.of),
    st.builds(Affine, st.integers(0, 512), st.integers(1, 4096), st.integers(1, 64)),
)
buffers = st.integers(0, sram_isa.MAX_BUFFER)


@st.composite
def hbm_record(draw) -> tuple:
    """A valid HBM-PIM record of any kind (tests/test_asm.py covers their spellings)."""
    syntax = draw(st.sampled_from(list(HBM_INSTRUCTIONS.values())))
    channels = None
    if syntax.channel is not ChannelForm.NONE and draw(st.booleans()) or syntax.channel in (
        ChannelForm.ONE,
        ChannelForm.RANGE,
    ):
        lo = draw(st.integers(0, 64))
        wide = syntax.channel is ChannelForm.RANGE and draw(st.booleans())
        channels = (lo, draw(st.integers(lo + 1, 128)) if wide else lo + 1)
    values = {field.name: draw(st.integers(field.minimum, 4096)) for field in syntax.fields}
    if syntax.count is not None and draw(st.booleans()):
        values.update(per_ctx=draw(st.integers(1, 64)), ctx_div=draw(st.integers(1, 64)))
    return record_of_fields(syntax, channels, values)


@st.composite
def sram_op(draw) -> sram_isa.SramInstructionOp:
    """A valid instruction of any kind, each operand and size as its Form allows."""
    op = draw(st.sampled_from(list(SramOp)))
    form = FORMS[op]
    kind = None
    if op is SramOp.VCU:
        kind = draw(st.sampled_from(list(VcuFn))).name.lower()
    elif op is SramOp.ALLOC:
        kind = draw(st.sampled_from(list(Space))).name.lower()
    cores = None
    if draw(st.booleans()):
        lo = draw(st.integers(0, 40))
        cores = (lo, draw(st.integers(lo + 1, sram_isa.MAX_CORE)))
    fields = {}
    for name in sram_isa.BUFFER_FIELDS:
        role = getattr(form, name)
        if role is not None and (not role.endswith("?") or draw(st.booleans())):
            fields[name] = draw(buffers)
    if op in sram_isa.TOKEN_OPS:
        fields["tok"] = draw(st.integers(0, sram_isa.MAX_TOKEN))
    cls = sram_isa.INSTRUCTION_OPS[op]
    for name in cls.size_names(kind):
        fields[name] = draw(sizes)
    instruction = cls(cores, kind=kind, **fields)
    assert instruction.problem() is None
    return instruction


@st.composite
def mixed_programs(draw) -> MachineProgram:
    """A program of up to four sections, each with random HBM-PIM and SRAM-PIM instructions,
    its directive fields given or not, and (or not) a part on every instruction."""
    tagged = draw(st.booleans())
    part = st.sampled_from(["", "qkv", "attention", "ffn.up-1"]) if tagged else st.just("")
    hbm_rows, sram_ops, hbm_parts, sram_parts = [], [], [], []
    sections, hbm_sections = [], []
    for number in range(draw(st.integers(1, 4))):
        given = (None, None, None)
        if number > 0 or draw(st.booleans()):
            given = (
                draw(st.none() | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)),
                draw(st.none() | st.integers(1, 64)),
                draw(st.none() | st.integers(0, 1000)),
            )
        hbm_start, sram_start = len(hbm_rows), len(sram_ops)
        for _ in range(draw(st.integers(0, 5))):
            hbm_rows.append(draw(hbm_record()))
            hbm_parts.append(draw(part))
        for _ in range(draw(st.integers(0, 5))):
            sram_ops.append(draw(sram_op()))
            sram_parts.append(draw(part))
        hbm_range, sram_range = (hbm_start, len(hbm_rows)), (sram_start, len(sram_ops))
        section = Section(*hbm_range, *given)
        hbm_sections.append(section)
        sections.append(
            MachineSection(given[0], section.times, section.stride, hbm_range, sram_range)
        )
    # As `from_module`: parts only when some instruction has one.
    tagged = any(hbm_parts) or any(sram_parts)
    if not sram_ops and not tagged:
        return draw(mixed_programs())  # that would be an HBM-PIM-only program
    hbm = HbmProgram(np.array(hbm_rows, dtype=HBM_RECORD_DTYPE), tuple(hbm_sections))
    sram = sram_isa.program_from_ops(sram_isa.StreamOp(sram_ops))
    return MachineProgram(
        hbm,
        sram,
        tuple(sections),
        "<input>",
        np.array(hbm_parts, dtype=str) if tagged else None,
        np.array(sram_parts, dtype=str) if tagged else None,
    )


def unnumbered(records: np.ndarray) -> list:
    copy = records.copy()
    copy["line"] = 0
    return copy.tolist()


def same_program(a: MachineProgram, b: MachineProgram) -> bool:
    """The same streams, sections and parts (source lines and names aside)."""

    def parts(p):
        return None if p is None else p.tolist()

    return (
        unnumbered(a.hbm.records) == unnumbered(b.hbm.records)
        and unnumbered(a.sram.records) == unnumbered(b.sram.records)
        and a.sections == b.sections
        and a.hbm.sections == b.hbm.sections
        and parts(a.hbm_parts) == parts(b.hbm_parts)
        and parts(a.sram_parts) == parts(b.sram_parts)
    )


def respaced(draw, text: str) -> str:
    """`text` with random blanks around and between fields and random comments."""
    lines = []
    for line in text.splitlines():
        words = line.split(" ")
        gaps = [draw(st.text(" \t", min_size=1, max_size=3)) for _ in words[1:]]
        spaced = words[0] + "".join(gap + word for gap, word in zip(gaps, words[1:]))
        comment = draw(st.sampled_from(["", " # note", "\t#x=1 sram.load"]))
        lines.append(draw(st.text(" \t", max_size=2)) + spaced + comment)
        if draw(st.integers(0, 5)) == 0:
            lines.append("# a comment line")
    return "\n".join(lines) + "\n"


# --- round trips and fast == lark ----------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(mixed_programs())
def test_mixed_programs_write_and_read_back_exactly(program: MachineProgram) -> None:
    text = write_asm(program)
    for read in (read_asm, read_asm_reference):
        again = read(text)
        assert isinstance(again, MachineProgram)
        assert same_program(again, program)
    assert write_asm(read_asm(text)) == text


@settings(max_examples=60, deadline=None)
@given(mixed_programs(), st.data())
def test_fast_and_reference_readers_agree_on_mixed_text(program, data) -> None:
    text = respaced(data.draw, write_asm(program))
    fast, reference = read_asm(text, "m.hpimasm"), read_asm_reference(text, "m.hpimasm")
    assert same_program(fast, program) and same_program(reference, program)
    # Line numbers too: messages and timelines name them.
    assert fast.hbm.records.tolist() == reference.hbm.records.tolist()
    assert fast.sram.records.tolist() == reference.sram.records.tolist()
    # A random character anywhere: the result may even be valid; both paths must agree.
    lines = text.split("\n")
    number = data.draw(st.integers(1, len(lines)))
    line = lines[number - 1]
    at = data.draw(st.integers(0, len(line)))
    lines[number - 1] = line[:at] + data.draw(st.sampled_from(list(" \t=:#x-0.9*(,"))) + line[at:]
    corrupted = "\n".join(lines)

    def result(read):
        try:
            program = read(corrupted, "m.hpimasm")
        except HpimError as error:
            return str(error)
        if isinstance(program, HbmProgram):
            return program.records.tolist(), program.sections
        return program.hbm.records.tolist(), program.sram.records.tolist(), program.sections

    assert result(read_asm) == result(read_asm_reference)


@settings(max_examples=200, deadline=None)
@given(sizes)
def test_a_size_has_one_spelling(size: Affine) -> None:
    assert size_of_text(size_text(size)) == size
    assert " " not in size_text(size)


def test_the_grammar_names_every_vcu_function() -> None:
    pattern = _parser().get_terminal("SRAM_VCU").pattern.value
    functions = set(re.search(r"\(([a-z|]+)\)", pattern).group(1).split("|"))
    assert functions == {fn.name.lower() for fn in VcuFn}


def test_hbm_only_text_stays_an_hbm_program() -> None:
    assert isinstance(read_asm("hbm.barrier\n"), HbmProgram)
    tagged = read_asm("hbm.barrier part=other\n")
    assert isinstance(tagged, MachineProgram) and tagged.hbm_parts.tolist() == ["other"]
    assert not tagged.has_sram


def test_lines_join_the_stream_of_their_prefix_in_each_section() -> None:
    text = (
        "sram.barrier\n.section layers repeat=3 row_stride=2\nsram.signal tok=1\n"
        "hbm.wait tok=1\nsram.wait cores=4 tok=2\nhbm.signal tok=2\n"
    )
    program = read_asm(text, "s.hpimasm")
    assert program.sections == (
        MachineSection(None, 1, 0, (0, 0), (0, 1)),
        MachineSection("layers", 3, 2, (0, 2), (1, 3)),
    )
    assert program.sram.records[["op", "core_lo", "core_hi", "tok", "line"]].tolist() == [
        (SramOp.BARRIER, 0, -1, -1, 1),
        (SramOp.SIGNAL, 0, -1, 1, 3),
        (SramOp.WAIT, 4, 5, 2, 5),
    ]
    # Written canonically: per section its HBM-PIM lines, then its SRAM-PIM lines.
    assert write_asm(program) == (
        "sram.barrier\n.section layers repeat=3 row_stride=2\nhbm.wait tok=1\n"
        "hbm.signal tok=2\nsram.signal tok=1\nsram.wait cores=4 tok=2\n"
    )


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        ("sram.lod dst=1 bytes=2", 1, "unknown instruction 'sram.lod'"),
        ("sram.vcu.softmaxx dst=1 src0=1 n=2", 1, "unknown instruction 'sram.vcu.softmaxx'"),
        ("sram.load cores=5:2 dst=1 bytes=2", 17, "core range 5:2 is empty"),
        ("sram.load cores=0:40000 dst=1 bytes=2", 17,
         "sram.load: core range 0 to 40000: core_hi must be at most 32767"),
        ("sram.load dst=1 src0=2 bytes=2", 17, "unexpected 'src0=2'; expected 'bytes='"),
        ("sram.load dst=1 bytes=0", 23, "sram.load: bytes must be at least 1, got 0"),
        ("sram.load dst=40000 bytes=1", 15,
         "sram.load: dst must be a buffer number in 0..32767, got 40000"),
        ("sram.mvm dst=1 src0=2 src1=3 rows=1*ctx cols=2", 35, "size '1*ctx' is written ctx"),
        ("sram.vcu.exp dst=1 src0=2 n=ceildiv(ctx+1,1)", 29,
         "size 'ceildiv(ctx+1,1)' is written ctx+1"),
        ("sram.alloc space=am dst=1 bytes=ctx-1", 33,
         'sram.alloc: bytes "ctx - 1" is -1 at ctx = 0: a size must be at least 1 at every ctx >= 0'),
        ("sram.alloc space=pim dst=1 bytes=4", 28, "unexpected 'bytes=4'; expected 'rows='"),
        ("sram.signal tok=1 part=two words", 28,
         "unexpected 'words'; expected end of line"),
        ("sram.wait tok=x", 15, "unexpected 'x'; expected a non-negative integer"),
        ("sram.wait tok=2147483648", 15, "tok must be at most 2147483647, got 2147483648"),
    ],
)
def test_sram_errors_name_line_column_found_and_expected(line, column, message) -> None:
    text = "# header\nsram.barrier\nhbm.barrier\n" + line + "\nsram.barrier\n"
    assert_line_4_error(text, line, column, message)


def test_a_part_assembly_cannot_spell_is_an_error() -> None:
    program = MachineProgram.of(
        HbmProgram.from_rows([]), sram_isa.program_from_ops(sram_isa.StreamOp([sram_isa.BarrierOp()]))
    )
    tagged = MachineProgram(
        program.hbm, program.sram, program.sections, hbm_parts=np.array([], dtype=str),
        sram_parts=np.array(["two words"]),
    )
    with pytest.raises(HpimError, match="sram record 0: part 'two words' must be a letter"):
        write_asm(tagged)


# --- modules and simulation ----------------------------------------------------------------


def printed(module) -> str:
    stream = io.StringIO()
    Printer(stream=stream).print_op(module)
    return stream.getvalue()


def streams_only(module) -> str:
    """The printed module as the assembly holds it: the streams, each instruction with its
    `part` and no other attribute (the module's, and `data` for `hpim run`, are not
    assembly fields)."""
    module.attributes.clear()
    for stream in module.ops:
        for op in stream.body.block.ops:
            for name in set(op.attributes) - {"part"}:
                del op.attributes[name]
    return printed(module)


def assert_round_trip_and_same_simulation(module, contexts, tmp_path: Path) -> None:
    """MLIR -> asm -> MLIR gives the same streams, asm -> MLIR -> asm the same text, and the
    assembly file simulates exactly as the MLIR does (times, energy, per-part tags)."""
    text = module_to_asm(module)
    again = asm_to_module(text)
    again.verify()
    assert printed(again) == streams_only(module.clone())
    assert module_to_asm(again) == text
    path = tmp_path / "step.hpimasm"
    path.write_text(text)
    from_asm = read_program(path)
    from_mlir = MachineProgram.from_module(module)
    assert same_program(from_asm, from_mlir)
    hw = load_hardware("hpim")
    for ctx in contexts:
        a, b = simulate_machine(from_asm, hw, ctx=ctx), simulate_machine(from_mlir, hw, ctx=ctx)
        assert a.as_dict() == b.as_dict()


def test_the_attention_head_example_round_trips_and_simulates_the_same(tmp_path) -> None:
    module = parse_module_text(EXAMPLE.read_text(), str(EXAMPLE))
    assert_round_trip_and_same_simulation(module, [512], tmp_path)
    # The .hpimasm beside it is the same program, written canonically.
    asm = EXAMPLE.with_suffix(".hpimasm")
    assert module_to_asm(asm_to_module(asm.read_text(), str(asm))) == module_to_asm(module)


def test_a_compiled_decode_step_round_trips_and_simulates_the_same(tmp_path) -> None:
    module = compile_module(CompileOptions("opt-125m"))
    assert_round_trip_and_same_simulation(module, [64, 1000], tmp_path)
    program = read_asm(module_to_asm(module))
    assert set(program.sram_parts.tolist()) > {"attention"}  # every record keeps its part
    assert "" not in set(program.hbm_parts.tolist()) | set(program.sram_parts.tolist())
