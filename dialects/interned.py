"""Interned attributes for the ISA dialects and the passes that build them.

xDSL attributes are immutable values, and a lowered program repeats the same few hundred
integers and strings over tens of thousands of instructions (the prefill of OPT-30B at 256
tokens: 21,641). Building each distinct one once, rather than an `IntegerAttr` (with its
`IntegerType`) per field of every op, is what `int_attr` and `str_attr` are for: that
prefill's `convert-pim-to-isa` took 2.50 s with an attribute per field, 1.09 s interned.
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
