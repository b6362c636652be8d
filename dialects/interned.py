"""Interned attributes for the ISA dialects and the passes that build them.

xDSL attributes are immutable values, and a lowered program repeats the same few hundred
integers and strings over tens of thousands of instructions (a prefill of OPT-30B: 21,739
ops). Building each distinct one once, rather than an `IntegerAttr` (with its `IntegerType`)
per field of every op, is what `int_attr` and `str_attr` are for: the lowering of that
prefill spends about a fifth of its time constructing and verifying attributes otherwise.
"""

from __future__ import annotations

from functools import cache

from xdsl.dialects.builtin import IntegerAttr, StringAttr, i64


@cache
def int_attr(value: int) -> IntegerAttr:
    """`value : i64`, one instance per value."""
    return IntegerAttr(value, i64)


@cache
def str_attr(value: str) -> StringAttr:
    """`"value"`, one instance per string."""
    return StringAttr(value)
