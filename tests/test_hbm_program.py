"""Compiled-program features of the HBM-PIM record array: context-dependent counts
(`bind_context`), repeated sections (`unroll`, `expand_sections`), and how `simulate` uses
them."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hpim_ir.asm import read_asm
from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import (
    HbmOp,
    HbmProgram,
    Section,
    bind_context,
    expand_sections,
    simulate,
    unroll,
    validate_program,
)
from hpim_ir.sim.hbm.program import bound_counts, split_count


@settings(max_examples=200, deadline=None)
@given(
    base=st.integers(0, 1000),
    per_ctx=st.integers(0, 64),
    ctx_div=st.integers(1, 64),
    ctx_off=st.one_of(st.just(0), st.integers(-5000, 5000)),
    ctx=st.integers(0, 100_000),
)
def test_bound_count_is_base_plus_the_ceiling(base, per_ctx, ctx_div, ctx_off, ctx):
    assume(base > 0 or per_ctx > 0)  # a count that does not grow is at least 1
    divisor = ctx_div if per_ctx else 1  # per_ctx 0 is written with ctx_div 1
    offset = ctx_off if per_ctx else 0  # an offset only comes with a ctx= term
    program = HbmProgram.from_rows(
        [(HbmOp.READ, 0, 4, 7, 32, base, 3, -1, per_ctx, divisor, offset)]
    )
    count = base + max(0, math.ceil(Fraction(per_ctx * ctx + offset, ctx_div)))
    bound = bind_context(program, ctx).records
    if count == 0:
        assert len(bound) == 0  # a read of no rows does nothing and is left out
    else:
        assert bound.tolist() == [(HbmOp.READ, 0, 4, 7, 32, count, 3, -1, 0, 1, 0)]


@settings(max_examples=300, deadline=None)
@given(
    base=st.integers(0, 50),
    per_ctx=st.integers(0, 64),
    ctx_div=st.integers(1, 4096),
    ctx_off=st.integers(-4095, 4096),
    pieces=st.integers(1, 8),
    ctx=st.integers(0, 20_000),
)
def test_pieces_of_a_count_add_up_to_it(base, per_ctx, ctx_div, ctx_off, pieces, ctx):
    assume(ctx_off > -ctx_div)  # a whole that never needs its max(0, ...)
    divisor, offset = (ctx_div, ctx_off) if per_ctx else (1, 0)
    whole = (base, per_ctx, divisor, offset)
    split = split_count(*whole, pieces)
    rows = [(HbmOp.READ, 0, 4, 7, 32, *count[:1], 3, -1, *count[1:]) for count in [whole, *split]]
    counts = [int(count) for count in bound_counts(HbmProgram.from_rows(rows).records, ctx)]
    # Independently: piece i takes units i, i + pieces, ... of the whole's count.
    assert counts[1:] == [len(range(i, counts[0], pieces)) for i in range(pieces)]
    assert sum(counts[1:]) == counts[0]
    for _, piece_per_ctx, piece_div, piece_off in split:
        assert piece_off == 0 or piece_per_ctx  # each piece is a valid count form
        assert piece_off > -piece_div  # and needs no max(0, ...) either


def test_a_count_that_clamps_is_not_split():
    # 0 + max(0, ceil((ctx - 8) / 4)) is 0 up to ctx = 8: its pieces could not add up.
    with pytest.raises(ValueError, match=r"max\(0, ceil\(\(1 \* ctx - 8\) / 4\)\)"):
        split_count(0, 1, 4, -8, 2)


def test_binding_leaves_other_instructions_and_shrinks_sections():
    # ctx = 0: the read (rows=0 ctx=1/8) vanishes, the readout keeps its 2 bursts; the second
    # section loses its first record.
    text = (
        "hbm.barrier\n.section layers repeat=2 row_stride=10\n"
        "hbm.read ch=0 row=0 rows=0 cols=32 ctx=1/8\nhbm.readout ch=0 n=2 ctx=3/4\n"
    )
    bound = bind_context(read_asm(text), 0)
    assert bound.records[["op", "n", "per_ctx", "ctx_div"]].tolist() == [
        (HbmOp.BARRIER, 1, 0, 1), (HbmOp.READOUT, 2, 0, 1)
    ]
    assert bound.sections == (Section(0, 1), Section(1, 2, "layers", 2, 10))
    # ctx = 5: rows = ceil(5 / 8) = 1, bursts = 2 + ceil(15 / 4) = 6.
    assert bind_context(read_asm(text), 5).records["n"].tolist() == [1, 1, 6]


def test_binding_errors_name_the_line():
    program = read_asm("hbm.barrier\nhbm.readout ch=0 n=1 ctx=2147483646/1\n", "kv.hpimasm")
    with pytest.raises(HpimError, match=r"^kv.hpimasm:2: hbm.readout count 1 \+ ceil\("):
        bind_context(program, 2, "kv.hpimasm")
    with pytest.raises(HpimError, match="the context length must be non-negative, got -3"):
        bind_context(program, -3)


def test_unroll_moves_every_row_by_the_stride():
    program = read_asm(
        "hbm.gemv ch=0 row=5 rows=2 cols=4\nhbm.readout ch=0 n=3\nhbm.rd ch=1 bank=2 row=9 col=0\n"
    )
    records = unroll(program, 3, 100).records
    assert records[["op", "row", "n", "line"]].tolist() == [
        (HbmOp.GEMV, 5 + 100 * l, 2, 1) if i == 0 else
        (HbmOp.READOUT, -1, 3, 2) if i == 1 else
        (HbmOp.RD, 9 + 100 * l, 1, 3)
        for l in range(3) for i in range(3)
    ]  # fmt: skip
    with pytest.raises(HpimError, match="moves a row to 4294967303"):
        unroll(program, 3, 2**31 - 1)


def test_expand_sections_unrolls_each_section_in_order():
    text = (
        "hbm.load_gb ch=0 cols=4\n.section body repeat=2 row_stride=7\n"
        "hbm.gemv ch=0 row=1 rows=1 cols=4\n.section\nhbm.readout ch=0 n=1\n"
    )
    records = expand_sections(read_asm(text)).records
    assert records[["op", "row"]].tolist() == [
        (HbmOp.LOAD_GB, -1), (HbmOp.GEMV, 1), (HbmOp.GEMV, 8), (HbmOp.READOUT, -1)
    ]


def test_sections_must_cover_the_records():
    records = HbmProgram.from_rows([(HbmOp.BARRIER, 0, -1, -1, -1, 1, 1)]).records
    with pytest.raises(TypeError, match="do not cover records 0..1"):
        HbmProgram(records, (Section(0, 0),))


def test_simulating_a_context_dependent_program():
    hw = load_hardware("hbm3-5.2gbps")
    program = read_asm("hbm.barrier\nhbm.gemv ch=0 row=0 rows=1 cols=32 ctx=1/16\n", "step.hpimasm")
    with pytest.raises(HpimError, match=r"^step.hpimasm:2: hbm.gemv depends on the context length"):
        simulate(program, hw, source="step.hpimasm")
    # ctx = 40: 1 + ceil(40 / 16) = 4 rows, as written out.
    explicit = read_asm("hbm.barrier\nhbm.gemv ch=0 row=0 rows=4 cols=32\n")
    assert simulate(program, hw, ctx=40) == simulate(explicit, hw)
    with pytest.raises(HpimError, match="still depends on the context length"):
        validate_program(program, hw, "step.hpimasm", {})


def test_simulating_repeated_sections_equals_the_unrolled_program():
    hw = load_hardware("hbm3-5.2gbps")
    text = (
        "hbm.load_gb ch=0:2 cols=8\n.section layers repeat=3 row_stride=40\n"
        "hbm.gemv ch=0:2 row=0 rows=2 cols=8\nhbm.write ch=1 row=20 rows=1 cols=2\n"
        "hbm.signal tok=1\nhbm.wait tok=1\n"
    )
    program = read_asm(text)
    unrolled = expand_sections(program)
    assert len(unrolled) == 1 + 3 * 4
    for engine in ("fast", "reference"):
        result = simulate(program, hw, engine=engine, trace=True)
        plain = simulate(unrolled, hw, engine=engine, trace=True)
        assert result.cycles == plain.cycles
        assert np.array_equal(result.trace, plain.trace)
    assert sorted(set(result.trace["row"][result.trace["command"] == 3].tolist())) == [
        0, 1, 40, 41, 80, 81
    ]
