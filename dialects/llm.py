"""The `llm` dialect: decoder-only transformers at tensor level.

This is what `hpim import` produces and what the compiler partitions. It is shaped by three
needs (docs/dialects/llm.md has the rationale):

- Weights are named symbols (`llm.weight`), not SSA constants: the compiler places each one in
  HBM-PIM banks and the functional simulator loads it by its Hugging Face name. Weights of the
  transformer layers are *layered*: one symbol stacks all layers (leading dimension = layer), so
  the layer body exists once in the IR and `llm.get_weight @w[%layer]` picks the slice.
- The decoder layers are one region, `llm.layers`, run `count` times; no per-layer copies.
- The context length is symbolic: a decode step takes the position as an `index` argument,
  `llm.kv_append` returns the whole cache as a tensor with a dynamic length, and attention ops
  accept any length. One compiled decode step serves every token.

Activations are `tensor<S x F x f16>` (S = tokens of the step: 1 in decode, the prompt length
in prefill). Attention heads are carried in attributes (`num_heads`, `num_kv_heads`); a
`[S, heads * head_dim]` tensor is the concatenation of the heads, as in Hugging Face.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    TensorType,
    UnitAttr,
    f16,
    i32,
)
from xdsl.ir import Attribute, Dialect, Operation, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import (
    IsTerminator,
    Pure,
    RecursiveMemoryEffect,
    SymbolOpInterface,
    SymbolTable,
)
from xdsl.utils.exceptions import VerifyException

# Helpers shared by the verifiers ------------------------------------------------------------


def _fmt(shape: Sequence[int]) -> str:
    return "x".join("?" if d == DYNAMIC_INDEX else str(d) for d in shape)


def _tensor(op: Operation, role: str, value: SSAValue | Attribute, rank: int) -> TensorType:
    """The tensor type of `value` (an SSA value or a type), checked to have `rank` dims."""
    typ = value.type if isinstance(value, SSAValue) else value
    if not isinstance(typ, TensorType):
        raise VerifyException(f"'{op.name}': {role} must be a tensor, got {typ}")
    shape = typ.get_shape()
    if len(shape) != rank:
        raise VerifyException(
            f"'{op.name}': {role} must have rank {rank}, got tensor<{_fmt(shape)}>"
        )
    return typ


def _dims_match(a: int, b: int) -> bool:
    return a == DYNAMIC_INDEX or b == DYNAMIC_INDEX or a == b


def _expect_dim(op: Operation, what: str, got: int, expected: int, because: str) -> None:
    if not _dims_match(got, expected):
        raise VerifyException(
            f"'{op.name}': {what} is {_fmt([got])} but {because} is {_fmt([expected])}"
        )


def _expect_same_type(op: Operation, role: str, typ: Attribute, ref: str, ref_typ: Attribute) -> None:
    if typ != ref_typ:
        raise VerifyException(f"'{op.name}': {role} type {typ} differs from {ref} type {ref_typ}")


def _lookup(op: Operation, ref: SymbolRefAttr, kind: type[Operation], what: str) -> Operation:
    found = SymbolTable.lookup_symbol(op, ref)
    if found is None:
        raise VerifyException(f"'{op.name}': {what} @{ref.string_value()} is not defined")
    # The expected op is the `kind` of the using op's own dialect (llm or pim).
    expected = op.name.split(".")[0] + "." + kind.name.split(".")[1]
    if not isinstance(found, kind) or found.name != expected:
        raise VerifyException(
            f"'{op.name}': @{ref.string_value()} is a '{found.name}', expected '{expected}'"
        )
    return found


def _heads(op: Operation, num_heads: IntegerAttr, num_kv_heads: IntegerAttr) -> tuple[int, int]:
    heads, kv_heads = num_heads.value.data, num_kv_heads.value.data
    if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
        raise VerifyException(
            f"'{op.name}': num_heads ({heads}) must be a positive multiple of "
            f"num_kv_heads ({kv_heads})"
        )
    return heads, kv_heads


def _per_head(op: Operation, role: str, features: int, heads: int) -> int:
    """Head dimension of a [S, heads * head_dim] tensor; `features` must divide evenly."""
    if features != DYNAMIC_INDEX and features % heads:
        raise VerifyException(
            f"'{op.name}': {role} has {features} features, not a multiple of {heads} heads"
        )
    return DYNAMIC_INDEX if features == DYNAMIC_INDEX else features // heads


_I64 = IntegerType(64)


def _int(value: int) -> IntegerAttr:
    return IntegerAttr(value, _I64)


def _f32(value: float) -> FloatAttr:
    return FloatAttr(value, 32)


def _split_properties(
    cls: type[IRDLOperation], entries: dict[str, Attribute]
) -> tuple[dict[str, Attribute], dict[str, Attribute]]:
    """Split a parsed attribute dictionary into the op's properties and other attributes."""
    names = cls.get_irdl_definition().properties
    return (
        {k: v for k, v in entries.items() if k in names},
        {k: v for k, v in entries.items() if k not in names},
    )


class _TypedByRoleSyntax(IRDLOperation):
    """Custom syntax `llm.op %a, %b {props} : T[, P]` for ops whose types follow from roles.

    `TYPE_ROLES` gives each operand's role: `T` has the first listed type (as has the result),
    `P` the second (per-feature parameters), `I` is `index`. The generic form can state any
    types; `verify_` then reports a mismatch naming the operand.
    """

    TYPE_ROLES: ClassVar[str]

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        start = parser.pos
        unresolved = parser.parse_comma_separated_list(
            parser.Delimiter.NONE, parser.parse_unresolved_operand
        )
        attributes = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        wanted = 2 if "P" in cls.TYPE_ROLES else 1
        if len(unresolved) != len(cls.TYPE_ROLES) or len(types) != wanted:
            parser.raise_error(
                f"'{cls.name}' takes {len(cls.TYPE_ROLES)} operand(s) and {wanted} type(s)",
                start,
                parser.pos,
            )
        by_role = {"T": types[0], "P": types[-1], "I": IndexType()}
        operands = [
            parser.resolve_operand(value, by_role[role])
            for value, role in zip(unresolved, cls.TYPE_ROLES, strict=True)
        ]
        properties, attributes = _split_properties(cls, attributes)
        return cls.create(
            operands=operands,
            result_types=[types[0]],
            properties=properties,
            attributes=attributes,
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_list(self.operands, printer.print_operand)
        printer.print_op_attributes({**self.properties, **self.attributes})
        printer.print_string(" : ")
        printer.print_attribute(self.operands[0].type)
        if "P" in self.TYPE_ROLES:
            printer.print_string(", ")
            printer.print_attribute(self.operands[self.TYPE_ROLES.index("P")].type)


# Module-level symbols -----------------------------------------------------------------------


class WeightBase(IRDLOperation):
    """A named model parameter (FP16 tensor), declared at module level.

    `hf_name` is the tensor's name in a Hugging Face checkpoint; for a `layered` weight the
    leading dimension is the layer and `hf_name` holds `{layer}` where the layer number goes.
    The compiler places weights in HBM-PIM; the functional simulator loads them by `hf_name`.
    """

    name = "llm.weight"

    sym_name = prop_def(SymbolNameConstraint())
    type = prop_def(TensorType)
    hf_name = opt_prop_def(StringAttr)
    layered = opt_prop_def(UnitAttr)

    traits = traits_def(SymbolOpInterface())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name (`layered` $layered^)? `:` $type attr-dict"

    def __init__(self, sym_name: str, typ: TensorType, hf_name: str | None, layered: bool):
        super().__init__(
            properties={
                "sym_name": StringAttr(sym_name),
                "type": typ,
                "hf_name": StringAttr(hf_name) if hf_name is not None else None,
                "layered": UnitAttr() if layered else None,
            }
        )

    def verify_(self) -> None:
        shape = self.type.get_shape()
        if not shape or any(d <= 0 for d in shape):
            raise VerifyException(
                f"'{self.name}' @{self.sym_name.data}: shape must be static and non-empty, "
                f"got tensor<{_fmt(shape)}>"
            )
        if self.layered is not None and len(shape) < 2:
            raise VerifyException(
                f"'{self.name}' @{self.sym_name.data}: a layered weight needs a leading "
                f"layer dimension, got tensor<{_fmt(shape)}>"
            )
        if self.hf_name is not None and (self.layered is not None) != (
            "{layer}" in self.hf_name.data
        ):
            raise VerifyException(
                f"'{self.name}' @{self.sym_name.data}: hf_name \"{self.hf_name.data}\" must "
                "contain {layer} exactly when the weight is layered"
            )

    @property
    def num_elements(self) -> int:
        count = 1
        for dim in self.type.get_shape():
            count *= dim
        return count


class KVCacheBase(IRDLOperation):
    """The key or value cache of all layers: `tensor<layers x capacity x (kv_heads*head_dim)>`.

    `capacity` is the longest context the model supports (its maximum position). Where the
    cache lives (SRAM-PIM or HBM) is decided by the compiler, not here.
    """

    name = "llm.kv_cache"

    sym_name = prop_def(SymbolNameConstraint())
    type = prop_def(TensorType)

    traits = traits_def(SymbolOpInterface())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name `:` $type attr-dict"

    def __init__(self, sym_name: str, typ: TensorType):
        super().__init__(properties={"sym_name": StringAttr(sym_name), "type": typ})

    def verify_(self) -> None:
        typ = _tensor(self, f"@{self.sym_name.data}", self.type, 3)
        if any(d <= 0 for d in typ.get_shape()):
            raise VerifyException(
                f"'{self.name}' @{self.sym_name.data}: shape must be static and positive, "
                f"got tensor<{_fmt(typ.get_shape())}>"
            )


# Weights and embeddings ---------------------------------------------------------------------


class GetWeightBase(IRDLOperation):
    """The value of a weight symbol; `@w[%layer]` selects one layer of a layered weight."""

    name = "llm.get_weight"

    weight = prop_def(SymbolRefAttr)
    layer = opt_operand_def(IndexType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$weight (`[` $layer^ `]`)? attr-dict `:` type($result)"

    def __init__(self, weight: str, result_type: TensorType, layer: SSAValue | None = None):
        super().__init__(
            operands=[[layer] if layer is not None else []],
            properties={"weight": SymbolRefAttr(weight)},
            result_types=[result_type],
        )

    def verify_(self) -> None:
        decl = _lookup(self, self.weight, WeightBase, "weight")
        assert isinstance(decl, WeightBase)
        layered = decl.layered is not None
        if layered and self.layer is None:
            raise VerifyException(
                f"'{self.name}': @{decl.sym_name.data} is layered and needs a [layer] index"
            )
        if not layered and self.layer is not None:
            raise VerifyException(
                f"'{self.name}': @{decl.sym_name.data} is not layered and takes no [layer] index"
            )
        shape = decl.type.get_shape()[1:] if layered else decl.type.get_shape()
        expected = TensorType(decl.type.element_type, shape)
        if self.result.type != expected:
            raise VerifyException(
                f"'{self.name}': result type {self.result.type} does not match "
                f"@{decl.sym_name.data}, which gives {expected}"
            )


class EmbeddingBase(IRDLOperation):
    """Token embedding: row `ids[s]` of `table` for every token s."""

    name = "llm.embedding"

    ids = operand_def(TensorType)
    table = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$ids `,` $table attr-dict `:` functional-type(operands, results)"

    def __init__(self, ids: SSAValue, table: SSAValue):
        (tokens,) = _tensor(self, "ids", ids, 1).get_shape()
        _, dim = _tensor(self, "table", table, 2).get_shape()
        super().__init__(operands=[ids, table], result_types=[TensorType(f16, [tokens, dim])])

    def verify_(self) -> None:
        ids = _tensor(self, "operand 'ids'", self.ids, 1)
        if ids.element_type != i32:
            raise VerifyException(f"'{self.name}': operand 'ids' must hold i32 token ids, got {ids}")
        _, dim = _tensor(self, "operand 'table'", self.table, 2).get_shape()
        tokens, width = _tensor(self, "result", self.result, 2).get_shape()
        _expect_dim(self, "result token count", tokens, ids.get_shape()[0], "'ids' length")
        _expect_dim(self, "result width", width, dim, "'table' width")


class PositionEmbeddingBase(IRDLOperation):
    """Learned absolute positions (OPT): row `start + s + offset` of `table` for token s.

    `start` is the position of the step's first token (the context length before the step);
    OPT's table is offset by 2 rows (a quirk of its training), hence `offset`.
    """

    name = "llm.position_embedding"

    start = operand_def(IndexType)
    table = operand_def(TensorType)
    offset = prop_def(IntegerAttr[IntegerType])
    result = result_def(TensorType)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$start `,` $table attr-dict `:` type($table) `->` type($result)"

    def __init__(self, start: SSAValue, table: SSAValue, tokens: int, offset: int):
        _, dim = _tensor(self, "table", table, 2).get_shape()
        super().__init__(
            operands=[start, table],
            properties={"offset": _int(offset)},
            result_types=[TensorType(f16, [tokens, dim])],
        )

    def verify_(self) -> None:
        rows, dim = _tensor(self, "operand 'table'", self.table, 2).get_shape()
        _, width = _tensor(self, "result", self.result, 2).get_shape()
        _expect_dim(self, "result width", width, dim, "'table' width")
        if not 0 <= self.offset.value.data < rows:
            raise VerifyException(
                f"'{self.name}': offset {self.offset.value.data} is outside the {rows}-row table"
            )


# Normalization ------------------------------------------------------------------------------


class _NormOp(_TypedByRoleSyntax):
    """Shared verification: per-feature parameters match the input's last dimension.

    Operands are declared by each subclass (xDSL orders inherited fields after the subclass's
    own, so declaring some here would reorder the operands).
    """

    epsilon = prop_def(FloatAttr)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        x, *params = self.operands
        _, features = _tensor(self, "operand 'input'", x, 2).get_shape()
        _expect_same_type(self, "result", self.result.type, "'input'", x.type)
        for role, value in zip(("gamma", "beta"), params):
            (dim,) = _tensor(self, f"operand '{role}'", value, 1).get_shape()
            _expect_dim(self, f"'{role}' length", dim, features, "the input feature count")
        if self.epsilon.value.data <= 0:
            raise VerifyException(f"'{self.name}': epsilon must be positive")


class LayerNormBase(_NormOp):
    """LayerNorm over the last dimension: `(x - mean) / sqrt(var + epsilon) * gamma + beta`."""

    name = "llm.layer_norm"

    input = operand_def(TensorType)
    gamma = operand_def(TensorType)
    beta = operand_def(TensorType)
    TYPE_ROLES: ClassVar[str] = "TPP"

    def __init__(self, x: SSAValue, gamma: SSAValue, beta: SSAValue, epsilon: float):
        super().__init__(
            operands=[x, gamma, beta],
            properties={"epsilon": _f32(epsilon)},
            result_types=[x.type],
        )


class RMSNormBase(_NormOp):
    """RMSNorm over the last dimension (LLaMA): `x / sqrt(mean(x^2) + epsilon) * gamma`."""

    name = "llm.rms_norm"

    input = operand_def(TensorType)
    gamma = operand_def(TensorType)
    TYPE_ROLES: ClassVar[str] = "TP"

    def __init__(self, x: SSAValue, gamma: SSAValue, epsilon: float):
        super().__init__(
            operands=[x, gamma], properties={"epsilon": _f32(epsilon)}, result_types=[x.type]
        )


# Linear layers ------------------------------------------------------------------------------


class LinearBase(IRDLOperation):
    """`input @ weight^T + bias`: weight is `[out, in]` as in Hugging Face checkpoints.

    In decode (one token) this is a GEMV, in prefill a GEMM; `llm-annotate` records which.
    """

    name = "llm.linear"

    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$input `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)"

    def __init__(self, x: SSAValue, weight: SSAValue, bias: SSAValue | None = None):
        tokens, _ = _tensor(self, "input", x, 2).get_shape()
        out, _ = _tensor(self, "weight", weight, 2).get_shape()
        super().__init__(
            operands=[x, weight, [bias] if bias is not None else []],
            result_types=[TensorType(f16, [tokens, out])],
        )

    def verify_(self) -> None:
        tokens, features = _tensor(self, "operand 'input'", self.input, 2).get_shape()
        out, inp = _tensor(self, "operand 'weight'", self.weight, 2).get_shape()
        _expect_dim(self, "'weight' input dimension", inp, features, "the input feature count")
        if self.bias is not None:
            (bias,) = _tensor(self, "operand 'bias'", self.bias, 1).get_shape()
            _expect_dim(self, "'bias' length", bias, out, "the weight's output dimension")
        res_tokens, res_out = _tensor(self, "result", self.result, 2).get_shape()
        _expect_dim(self, "result token count", res_tokens, tokens, "the input token count")
        _expect_dim(self, "result width", res_out, out, "the weight's output dimension")

    @property
    def weight_elements(self) -> int:
        out, inp = self.weight.type.get_shape()  # type: ignore[union-attr]
        return out * inp


# Attention ----------------------------------------------------------------------------------


class RoPEBase(_TypedByRoleSyntax):
    """Rotary position embedding (LLaMA, rotate-half form) of every head of `input`.

    Token s of the step is at position `start + s`; `theta` is the frequency base.
    """

    name = "llm.rope"

    input = operand_def(TensorType)
    start = operand_def(IndexType)
    num_heads = prop_def(IntegerAttr[IntegerType])
    theta = prop_def(FloatAttr)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    TYPE_ROLES: ClassVar[str] = "TI"

    def __init__(self, x: SSAValue, start: SSAValue, num_heads: int, theta: float):
        super().__init__(
            operands=[x, start],
            properties={"num_heads": _int(num_heads), "theta": _f32(theta)},
            result_types=[x.type],
        )

    def verify_(self) -> None:
        _, features = _tensor(self, "operand 'input'", self.input, 2).get_shape()
        heads = self.num_heads.value.data
        if heads <= 0:
            raise VerifyException(f"'{self.name}': num_heads must be positive, got {heads}")
        head_dim = _per_head(self, "operand 'input'", features, heads)
        if head_dim != DYNAMIC_INDEX and head_dim % 2:
            raise VerifyException(f"'{self.name}': head dimension {head_dim} must be even")
        _expect_same_type(self, "result", self.result.type, "'input'", self.input.type)
        if self.theta.value.data <= 0:
            raise VerifyException(f"'{self.name}': theta must be positive")


class KVAppendBase(IRDLOperation):
    """Write the step's keys (or values) into `@cache[layer]` at rows `position ..` and return
    the cache rows `[0, position + S)`: the whole context, its length symbolic (`?`)."""

    name = "llm.kv_append"

    value = operand_def(TensorType)
    position = operand_def(IndexType)
    layer = operand_def(IndexType)
    cache = prop_def(SymbolRefAttr)
    result = result_def(TensorType)

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = (
        "$value `into` $cache `[` $layer `]` `at` $position attr-dict "
        "`:` type($value) `->` type($result)"
    )

    def __init__(self, value: SSAValue, cache: str, layer: SSAValue, position: SSAValue):
        _, features = _tensor(self, "value", value, 2).get_shape()
        super().__init__(
            operands=[value, position, layer],
            properties={"cache": SymbolRefAttr(cache)},
            result_types=[TensorType(f16, [DYNAMIC_INDEX, features])],
        )

    def verify_(self) -> None:
        decl = _lookup(self, self.cache, KVCacheBase, "cache")
        assert isinstance(decl, KVCacheBase)
        _, _, width = decl.type.get_shape()
        _, features = _tensor(self, "operand 'value'", self.value, 2).get_shape()
        _expect_dim(self, "'value' width", features, width, f"@{decl.sym_name.data}'s width")
        length, res_width = _tensor(self, "result", self.result, 2).get_shape()
        _expect_dim(self, "result width", res_width, width, f"@{decl.sym_name.data}'s width")
        if length != DYNAMIC_INDEX:
            raise VerifyException(
                f"'{self.name}': result length must be dynamic (the context length), got {length}"
            )


class _AttentionOp(IRDLOperation):
    """Shared head bookkeeping of the two attention matrix products."""

    num_heads = prop_def(IntegerAttr[IntegerType])
    num_kv_heads = prop_def(IntegerAttr[IntegerType])
    result = result_def(TensorType)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)

    @property
    def group_size(self) -> int:
        """Query heads that share one key/value head (grouped-query attention)."""
        return self.num_heads.value.data // self.num_kv_heads.value.data


class AttentionScoresBase(_AttentionOp):
    """`scale * q . K^T` per head: `[S, H*d] x [T, Hkv*d] -> [H, S, T]`.

    Query head h reads key head `h // (H / Hkv)` (grouped-query attention). With `causal`,
    query s (at position T - S + s) sees only keys at positions up to its own; the decode step
    (S = 1) needs no mask.
    """

    name = "llm.attention_scores"

    query = operand_def(TensorType)
    keys = operand_def(TensorType)
    scale = prop_def(FloatAttr)
    causal = opt_prop_def(UnitAttr)

    assembly_format = "$query `,` $keys attr-dict `:` functional-type(operands, results)"

    def __init__(
        self, q: SSAValue, keys: SSAValue, num_heads: int, num_kv_heads: int, scale: float, causal: bool
    ):
        tokens, _ = _tensor(self, "query", q, 2).get_shape()
        context, _ = _tensor(self, "keys", keys, 2).get_shape()
        super().__init__(
            operands=[q, keys],
            properties={
                "num_heads": _int(num_heads),
                "num_kv_heads": _int(num_kv_heads),
                "scale": _f32(scale),
                "causal": UnitAttr() if causal else None,
            },
            result_types=[TensorType(f16, [num_heads, tokens, context])],
        )

    def verify_(self) -> None:
        heads, kv_heads = _heads(self, self.num_heads, self.num_kv_heads)
        tokens, q_features = _tensor(self, "operand 'query'", self.query, 2).get_shape()
        context, k_features = _tensor(self, "operand 'keys'", self.keys, 2).get_shape()
        q_dim = _per_head(self, "operand 'query'", q_features, heads)
        k_dim = _per_head(self, "operand 'keys'", k_features, kv_heads)
        _expect_dim(self, "key head dimension", k_dim, q_dim, "the query head dimension")
        res = _tensor(self, "result", self.result, 3).get_shape()
        for what, got, expected, because in (
            ("result heads", res[0], heads, "num_heads"),
            ("result query count", res[1], tokens, "the query token count"),
            ("result key count", res[2], context, "the key count"),
        ):
            _expect_dim(self, what, got, expected, because)


class AttentionValuesBase(_AttentionOp):
    """`probs . V` per head: `[H, S, T] x [T, Hkv*d] -> [S, H*d]` (heads concatenated)."""

    name = "llm.attention_values"

    probs = operand_def(TensorType)
    values = operand_def(TensorType)

    assembly_format = "$probs `,` $values attr-dict `:` functional-type(operands, results)"

    def __init__(self, probs: SSAValue, values: SSAValue, num_heads: int, num_kv_heads: int):
        _, tokens, _ = _tensor(self, "probs", probs, 3).get_shape()
        _, v_features = _tensor(self, "values", values, 2).get_shape()
        super().__init__(
            operands=[probs, values],
            properties={"num_heads": _int(num_heads), "num_kv_heads": _int(num_kv_heads)},
            result_types=[TensorType(f16, [tokens, v_features // num_kv_heads * num_heads])],
        )

    def verify_(self) -> None:
        heads, kv_heads = _heads(self, self.num_heads, self.num_kv_heads)
        p_heads, tokens, context = _tensor(self, "operand 'probs'", self.probs, 3).get_shape()
        v_context, v_features = _tensor(self, "operand 'values'", self.values, 2).get_shape()
        _expect_dim(self, "'probs' head count", p_heads, heads, "num_heads")
        _expect_dim(self, "'values' length", v_context, context, "the 'probs' key count")
        v_dim = _per_head(self, "operand 'values'", v_features, kv_heads)
        res_tokens, res_features = _tensor(self, "result", self.result, 2).get_shape()
        _expect_dim(self, "result token count", res_tokens, tokens, "the 'probs' query count")
        if v_dim != DYNAMIC_INDEX:
            _expect_dim(self, "result width", res_features, v_dim * heads, "heads x head dimension")


# Element-wise -------------------------------------------------------------------------------


class _UnaryOp(_TypedByRoleSyntax):
    input = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    TYPE_ROLES: ClassVar[str] = "T"

    def __init__(self, x: SSAValue):
        super().__init__(operands=[x], result_types=[x.type])

    def verify_(self) -> None:
        _expect_same_type(self, "result", self.result.type, "'input'", self.input.type)


class SoftmaxBase(_UnaryOp):
    """Softmax over the last dimension (the keys of each head and query)."""

    name = "llm.softmax"


class ReluBase(_UnaryOp):
    """`max(x, 0)` (OPT's FFN activation)."""

    name = "llm.relu"


class GeluBase(_UnaryOp):
    """GELU, tanh approximation (transformers' `"gelu_new"`)."""

    name = "llm.gelu"


class SiluBase(_UnaryOp):
    """`x * sigmoid(x)` (the gate of LLaMA's SwiGLU FFN)."""

    name = "llm.silu"


class _BinaryOp(_TypedByRoleSyntax):
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    TYPE_ROLES: ClassVar[str] = "TT"

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        super().__init__(operands=[lhs, rhs], result_types=[lhs.type])

    def verify_(self) -> None:
        _expect_same_type(self, "operand 'rhs'", self.rhs.type, "'lhs'", self.lhs.type)
        _expect_same_type(self, "result", self.result.type, "'lhs'", self.lhs.type)


class AddBase(_BinaryOp):
    """Element-wise sum (residual connections)."""

    name = "llm.add"


class MulBase(_BinaryOp):
    """Element-wise product (SwiGLU: `silu(gate) * up`)."""

    name = "llm.mul"


# The layer loop -----------------------------------------------------------------------------


class LayersBase(IRDLOperation):
    """Run the body `count` times, threading the hidden state: the decoder layer stack.

    The body's block arguments are the layer index (`index`, selects layered weights and the
    cache layer) and the hidden state; `llm.yield` returns the next hidden state.
    """

    name = "llm.layers"

    count = prop_def(IntegerAttr[IntegerType])
    init = operand_def(TensorType)
    result = result_def(TensorType)
    body = region_def("single_block")

    traits = traits_def(RecursiveMemoryEffect())

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        # llm.layers COUNT (%init) {attrs} : T { ^bb0(%layer: index, %h: T): ... }
        count = parser.parse_integer(allow_boolean=False, allow_negative=True)
        parser.parse_punctuation("(")
        init = parser.parse_unresolved_operand()
        parser.parse_punctuation(")")
        properties, attributes = _split_properties(cls, parser.parse_optional_attr_dict())
        parser.parse_punctuation(":")
        typ = parser.parse_type()
        body = parser.parse_region()
        return cls.create(
            operands=[parser.resolve_operand(init, typ)],
            result_types=[typ],
            properties={"count": _int(count), **properties},
            attributes=attributes,
            regions=[body],
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(f" {self.count.value.data} (")
        printer.print_operand(self.init)
        printer.print_string(")")
        printer.print_op_attributes(
            {k: v for k, v in self.properties.items() if k != "count"} | self.attributes
        )
        printer.print_string(" : ")
        printer.print_attribute(self.init.type)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=True)

    def __init__(self, count: int, init: SSAValue, body: Region):
        super().__init__(
            operands=[init],
            properties={"count": _int(count)},
            result_types=[init.type],
            regions=[body],
        )

    def verify_(self) -> None:
        if self.count.value.data <= 0:
            raise VerifyException(f"'{self.name}': count must be positive, got {self.count.value.data}")
        _expect_same_type(self, "result", self.result.type, "'init'", self.init.type)
        block = self.body.block
        arg_types = [arg.type for arg in block.args]
        if arg_types != [IndexType(), self.init.type]:
            raise VerifyException(
                f"'{self.name}': body arguments must be (index, {self.init.type}), got "
                f"({', '.join(str(t) for t in arg_types)})"
            )
        terminator = block.last_op
        yield_name = self.name.split(".")[0] + ".yield"
        if terminator is None or terminator.name != yield_name or [
            v.type for v in terminator.operands
        ] != [self.init.type]:
            raise VerifyException(
                f"'{self.name}': body must end in {yield_name} of {self.init.type}"
            )


class YieldBase(IRDLOperation):
    """Ends the body of `llm.layers` with the next hidden state."""

    name = "llm.yield"

    values = var_operand_def()

    traits = traits_def(IsTerminator(), Pure())
    assembly_format = "$values attr-dict `:` type($values)"

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[values])

    def verify_(self) -> None:
        # The parent check of HasParent, by name, so that pim.yield (derived from this
        # definition) expects pim.layers.
        expected = self.name.split(".")[0] + ".layers"
        parent = self.parent_op()
        if parent is None or parent.name != expected:
            raise VerifyException(f"'{self.name}' expects parent op '{expected}'")


def _define(base: type[IRDLOperation]) -> type[IRDLOperation]:
    """The registered op class of an op definition. Definitions are kept undecorated
    (`...Base`) so the `pim` dialect can derive its placed twins from them."""
    name = base.__name__.removesuffix("Base") + "Op"
    return irdl_op_definition(
        type(name, (base,), {"__module__": __name__, "__doc__": base.__doc__})
    )


WeightOp = _define(WeightBase)
KVCacheOp = _define(KVCacheBase)
GetWeightOp = _define(GetWeightBase)
EmbeddingOp = _define(EmbeddingBase)
PositionEmbeddingOp = _define(PositionEmbeddingBase)
LayerNormOp = _define(LayerNormBase)
RMSNormOp = _define(RMSNormBase)
LinearOp = _define(LinearBase)
RoPEOp = _define(RoPEBase)
KVAppendOp = _define(KVAppendBase)
AttentionScoresOp = _define(AttentionScoresBase)
AttentionValuesOp = _define(AttentionValuesBase)
SoftmaxOp = _define(SoftmaxBase)
ReluOp = _define(ReluBase)
GeluOp = _define(GeluBase)
SiluOp = _define(SiluBase)
AddOp = _define(AddBase)
MulOp = _define(MulBase)
LayersOp = _define(LayersBase)
YieldOp = _define(YieldBase)


LLM = Dialect(
    "llm",
    [
        WeightOp,
        KVCacheOp,
        GetWeightOp,
        EmbeddingOp,
        PositionEmbeddingOp,
        LayerNormOp,
        RMSNormOp,
        LinearOp,
        RoPEOp,
        KVAppendOp,
        AttentionScoresOp,
        AttentionValuesOp,
        SoftmaxOp,
        ReluOp,
        GeluOp,
        SiluOp,
        AddOp,
        MulOp,
        LayersOp,
        YieldOp,
    ],
    [],
)
