"""The `sram_isa` dialect and its bridge to the SRAM-PIM record array.

- Ops give the records program.py's layout says they mean (hand-written expectations).
- Random valid programs of every op, with symbolic sizes, round-trip records -> ops ->
  records exactly, and through the custom and the generic printed forms.
- Symbolic sizes parse exactly as `Affine` prints them and nothing else.
- The size verifier agrees with evaluating the size at every context length.
- Bad records and invalid streams give one HpimError naming the record or the op.

The verifier messages themselves are in tests/lit/dialects/sram_isa/invalid.mlir.
"""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer

from hpim_ir.dialects import sram_isa
from hpim_ir.errors import HpimError
from hpim_ir.sim.sram.program import (
    CTX,
    FORMS,
    PIM_ALLOC_SIZES,
    Form,
    RECORD_DTYPE,
    Affine,
    ProgramBuilder,
    Space,
    SramOp,
    SramProgram,
    VcuFn,
)

INT32 = 2**31 - 1
INT16 = 2**15 - 1


# --- the op table follows FORMS ----------------------------------------------------------


def test_one_op_per_instruction_kind_named_after_it() -> None:
    assert set(sram_isa.INSTRUCTION_OPS) == set(SramOp)
    for op, cls in sram_isa.INSTRUCTION_OPS.items():
        assert cls.name == f"sram_isa.{op.name.lower()}"


def test_every_size_name_is_a_property_and_prints_in_record_order() -> None:
    for cls in sram_isa.INSTRUCTION_OPS.values():
        declared = set(cls.get_irdl_definition().properties)
        assert declared == {"kind", "core_lo", "core_hi", *sram_isa.FIELD_KEYWORDS}
    for form in (*FORMS.values(), Form(PIM_ALLOC_SIZES)):
        assert set(form.sizes) <= set(sram_isa.SIZE_NAMES)
        # the custom syntax prints sizes in SIZE_NAMES order; it must be the record order
        positions = [sram_isa.SIZE_NAMES.index(name) for name in form.sizes]
        assert positions == sorted(positions), form.sizes


def test_kind_words_are_not_field_words() -> None:
    # the parser takes a known kind first; a kind spelled like a field would be ambiguous
    assert not sram_isa.KIND_NAMES & {"cores", *sram_isa.FIELD_KEYWORDS}


# --- ops to records, by hand -------------------------------------------------------------


def test_ops_give_the_records_of_their_semantics() -> None:
    stream = sram_isa.StreamOp(
        [
            sram_isa.AllocOp((0, 32), kind="pim", dst=5, rows=CTX + 1, cols=64),
            sram_isa.LoadOp(dst=3, bytes=CTX * 256 + 256),
            sram_isa.VcuOp((0, 32), kind="softmax", dst=4, src0=3, n=(CTX + 1).ceildiv(4)),
            sram_isa.GemmOp((2, 3), dst=1, src0=2, src1=3, m=16, n=64, k=8),
            sram_isa.ReduceOp((4, 8), src0=4, bytes=128),
            sram_isa.SignalOp(tok=7),
            sram_isa.BarrierOp(),
        ]
    )
    # (op, kind, core_lo, core_hi, dst, src0, src1, tok, a0 b0 d0, a1 b1 d1, a2 b2 d2, line)
    # per RECORD_DTYPE: every core is (0, -1), no operand -1, no token -1, an unused size
    # (0, 0, 1); size i is ceil((a_i*ctx + b_i)/d_i), so ctx + 1 is (1, 1, 1), 256*ctx + 256
    # is (256, 256, 1), ceildiv(ctx + 1, 4) is (1, 1, 4), a constant c is (0, c, 1).
    assert sram_isa.program_from_ops(stream).records.tolist() == [
        (SramOp.ALLOC, Space.PIM, 0, 32, 5, -1, -1, -1, 1, 1, 1, 0, 64, 1, 0, 0, 1, 0),
        (SramOp.LOAD, 0, 0, -1, 3, -1, -1, -1, 256, 256, 1, 0, 0, 1, 0, 0, 1, 0),
        (SramOp.VCU, VcuFn.SOFTMAX, 0, 32, 4, 3, -1, -1, 1, 1, 4, 0, 0, 1, 0, 0, 1, 0),
        (SramOp.GEMM, 0, 2, 3, 1, 2, 3, -1, 0, 16, 1, 0, 64, 1, 0, 8, 1, 0),
        (SramOp.REDUCE, 0, 4, 8, -1, 4, -1, -1, 0, 128, 1, 0, 0, 1, 0, 0, 1, 0),
        (SramOp.SIGNAL, 0, 0, -1, -1, -1, -1, 7, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0),
        (SramOp.BARRIER, 0, 0, -1, -1, -1, -1, -1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0),
    ]


def test_program_from_an_invalid_stream_is_an_error() -> None:
    stream = sram_isa.StreamOp([sram_isa.LoadOp(dst=3, bytes=CTX * 256)])
    with pytest.raises(HpimError) as error:
        sram_isa.program_from_ops(stream)
    assert str(error.value) == (
        "'sram_isa.load': bytes \"256*ctx\" is 0 at ctx = 0: "
        "a size must be at least 1 at every ctx >= 0"
    )


# --- random valid programs round-trip ----------------------------------------------------

# Independent of the dialect's tables: program.py's record comments say which ops carry a
# kind (vcu: VcuFn, alloc: Space) and a token (signal, wait).
KIND_ENUMS = {SramOp.VCU: VcuFn, SramOp.ALLOC: Space}
TOKEN_OPS = (SramOp.SIGNAL, SramOp.WAIT)

small = st.integers(1, 300)
positive = st.one_of(small, st.integers(1, INT32))
# At least 1 at every ctx >= 0: a >= 0, b >= 1, d >= 1 (ceil((a*ctx + b)/d) >= ceil(b/d) >= 1).
valid_sizes = st.one_of(
    st.builds(Affine, st.just(0), positive, st.just(1)),
    st.builds(Affine, st.one_of(st.integers(0, 300), st.integers(0, INT32)), positive, positive),
)
buffers = st.one_of(st.integers(0, 16), st.integers(0, INT16))


@st.composite
def records(draw) -> tuple:
    """One valid instruction record (line 0), drawn over every op, kind and operand form."""
    op = draw(st.sampled_from(list(SramOp)))
    form = FORMS[op]
    kind = draw(st.sampled_from(list(KIND_ENUMS[op]))) if op in KIND_ENUMS else 0
    names = PIM_ALLOC_SIZES if (op, kind) == (SramOp.ALLOC, Space.PIM) else form.sizes
    cores = draw(
        st.one_of(
            st.none(),
            st.integers(0, INT16 - 1).flatmap(
                lambda lo: st.tuples(st.just(lo), st.integers(lo + 1, INT16))
            ),
        )
    )
    operands = {}
    for field in ("dst", "src0", "src1"):
        role = getattr(form, field)
        if role is None:
            operands[field] = -1
        elif role.endswith("?"):
            operands[field] = draw(st.one_of(st.just(-1), buffers))
        else:
            operands[field] = draw(buffers)
    tok = draw(st.integers(0, INT32)) if op in TOKEN_OPS else -1
    sizes = [draw(valid_sizes) for _ in names]
    builder = ProgramBuilder().add(op, cores, kind=int(kind), tok=tok, sizes=sizes, **operands)
    return builder.rows[0]


programs = st.lists(records(), max_size=20).map(
    lambda rows: SramProgram(np.array(rows, dtype=RECORD_DTYPE))
)


def _context() -> Context:
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(sram_isa.SramIsa)
    return ctx


def _printed(op, generic: bool) -> str:
    out = io.StringIO()
    Printer(stream=out, print_generic_format=generic).print_op(op)
    return out.getvalue()


@settings(max_examples=80, deadline=None)
@given(programs)
def test_records_to_ops_to_records_is_the_identity(program: SramProgram) -> None:
    stream = sram_isa.ops_from_program(program)
    stream.verify()
    assert sram_isa.program_from_ops(stream).records.tolist() == program.records.tolist()


@settings(max_examples=60, deadline=None)
@given(programs, st.booleans())
def test_printed_ops_parse_back_to_the_same_ops(program: SramProgram, generic: bool) -> None:
    module = ModuleOp([sram_isa.ops_from_program(program)])
    text = _printed(module, generic)
    parsed = Parser(_context(), text).parse_module()
    parsed.verify()
    assert parsed.is_structurally_equivalent(module)
    (stream,) = parsed.body.block.ops
    assert sram_isa.program_from_ops(stream).records.tolist() == program.records.tolist()
    assert _printed(parsed, generic) == text


# --- size text ---------------------------------------------------------------------------

any_int32 = st.integers(-INT32 - 1, INT32)
any_affine = st.builds(
    Affine, st.one_of(st.integers(-3, 3), any_int32), st.one_of(st.integers(-9, 9), any_int32),
    st.one_of(st.integers(-3, 5), any_int32),
)


@given(any_affine)
def test_symbolic_sizes_parse_as_affine_prints_them(size: Affine) -> None:
    assume(not (size.a == 0 and size.d == 1))  # constants are written as integers
    assert sram_isa.size_of_text(str(size)) == size


@given(st.text("ctx0123456789+-* ceildiv(),", max_size=24))
def test_only_the_printed_form_parses(text: str) -> None:
    try:
        size = sram_isa.size_of_text(text)
    except ValueError as error:
        assert f'"{text}"' in str(error)
    else:
        assert str(size) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ctx+1", 'size "ctx+1" is not a size'),
        ("1*ctx", 'size "1*ctx" is written "ctx"'),
        ("ctx + 0", 'size "ctx + 0" is written "ctx"'),
        ("ctx + -1", 'size "ctx + -1" is not a size'),
        ("ceildiv(ctx, 1)", 'size "ceildiv(ctx, 1)" is written "ctx"'),
        ("0*ctx + 7", 'size "0*ctx + 7" is written 7'),
        ("7", 'size "7" is a constant: write it without quotes, 7'),
        ("ceildiv(ctx + 1, 4", 'size "ceildiv(ctx + 1, 4" is not a size'),
    ],
)
def test_other_spellings_are_rejected_naming_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        sram_isa.size_of_text(text)
    assert str(error.value).startswith(message)


@given(st.integers(-6, 6), st.integers(-40, 40), st.integers(-2, 6), st.sampled_from([0, 1]))
def test_size_verifier_agrees_with_evaluating_every_context_length(
    a: int, b: int, d: int, minimum: int
) -> None:
    # minimum 1: every size; 0: a stream_mvm's, which may be empty
    size = Affine(a, b, d)
    problem = sram_isa.size_problem("n", size, minimum)
    if d < 1:
        assert problem == f'n "{size}" divides by {d}: the divisor must be at least 1'
        return
    # a*ctx + b is monotone, so a first ctx with size(ctx) < minimum, if any, is at most
    # |b| + d + 1
    bad = [ctx for ctx in range(0, abs(b) + d + 2) if size(ctx) < minimum]
    if not bad:
        assert problem is None
    elif a == 0 and d == 1:
        assert problem == f"n must be at least {minimum}, got {b}"
    else:
        assert problem == (
            f'n "{size}" is {size(bad[0])} at ctx = {bad[0]}: '
            f"a size must be at least {minimum} at every ctx >= 0"
        )


# --- bad records -------------------------------------------------------------------------


def _row(kind_of_op: SramOp, **fields) -> tuple:
    """A record: every column unset (as ProgramBuilder leaves it) except `fields`."""
    row = dict(zip(RECORD_DTYPE.names, ProgramBuilder().add(kind_of_op).rows[0]))
    row.update(fields)
    return tuple(row.values())


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_row(SramOp.BARRIER, op=42), "record 1: unknown instruction kind 42"),
        (
            _row(SramOp.VCU, kind=12, dst=1, src0=2, b0=4),
            "record 1 (sram_isa.vcu): kind 12 is unknown (0 exp, 1 max, 2 sum, 3 softmax, "
            "4 layernorm, 5 rmsnorm, 6 gelu, 7 relu, 8 silu, 9 mul, 10 add, 11 rope)",
        ),
        (
            _row(SramOp.LOAD, kind=1, dst=1, b0=4),
            "record 1 (sram_isa.load): kind 1: only vcu and alloc have a kind",
        ),
        (
            _row(SramOp.LOAD, dst=1, b0=4, a1=1),
            "record 1 (sram_isa.load): has no size 1 (a1, b1, d1 must be 0, 0, 1); "
            "its sizes are bytes",
        ),
        (
            _row(SramOp.ALLOC, kind=Space.AM, dst=1, b0=4, b1=4),
            "record 1 (sram_isa.alloc): has no size 1 (a1, b1, d1 must be 0, 0, 1); "
            "its sizes are bytes",
        ),
        (
            _row(SramOp.LOAD, dst=-1, b0=4),
            "record 1 (sram_isa.load): dst is required (an activation-memory buffer number)",
        ),
        (
            _row(SramOp.STORE, src0=1, src1=-2, b0=4),
            "record 1 (sram_isa.store): takes no src1 (its operands: src0), got -2",
        ),
        (
            _row(SramOp.SCALAR, tok=3, b0=4),
            "record 1 (sram_isa.scalar): takes no tok (only signal and wait do), got 3",
        ),
        (_row(SramOp.WAIT), "record 1 (sram_isa.wait): tok is required"),
        (
            _row(SramOp.FREE, core_lo=3, core_hi=2, dst=0),
            "record 1 (sram_isa.free): core range 3 to 2 is empty",
        ),
        (
            _row(SramOp.TRANSPOSE, dst=1, src0=2, b0=4, a1=1, b1=-1),
            'record 1 (sram_isa.transpose): cols "ctx - 1" is -1 at ctx = 0: '
            "a size must be at least 1 at every ctx >= 0",
        ),
    ],
)
def test_bad_records_name_the_record(row: tuple, message: str) -> None:
    program = SramProgram(np.array([_row(SramOp.BARRIER), row], dtype=RECORD_DTYPE))
    with pytest.raises(HpimError) as error:
        sram_isa.ops_from_program(program)
    assert str(error.value) == message


def test_the_rationale_page_example_is_valid() -> None:
    text = (Path(__file__).parents[1] / "docs" / "dialects" / "sram_isa.md").read_text()
    example = re.search(r"```mlir\n(.*?)```", text, re.DOTALL)
    assert example is not None
    module = Parser(_context(), example[1]).parse_module()
    module.verify()
    (stream,) = module.body.block.ops
    assert len(sram_isa.program_from_ops(stream)) == len(stream.body.block.ops)
