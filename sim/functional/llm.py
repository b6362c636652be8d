"""The functional interpreter of the `llm` dialect: a model's values, computed with numpy.

`run_prefill` and `run_decode` execute the `@prefill` / `@decode_step` function of a module
built by the frontend, op by op, on xDSL's interpreter: `LlmFunctions` is the dispatch table
(one implementation per op class), xDSL's own `func` and `arith` implementations do the rest.
`llm.layers` runs its body `count` times with the layer index, `llm.get_weight @w[%layer]`
takes that layer's slice of a stacked weight, and `llm.kv_append` grows a `KVCache`.

Precision (docs/functional.md): weights are FP16. Every op reads its operands, computes in
FP32 (matrix products and reductions accumulate in FP32; `kernels.py`) and rounds its result
to the storage precision, FP16 by default: the activations between ops and the KV cache are
stored as the accelerator stores them. `precision="fp32"` keeps them in FP32 instead, which
isolates the model's arithmetic from FP16 rounding when checking against a reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import IndexType, ModuleOp, TensorType
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.interpreters.arith import ArithFunctions
from xdsl.interpreters.func import FuncFunctions
from xdsl.utils.exceptions import InterpretationError, VerifyException

from hpim_ir.dialects import llm
from hpim_ir.errors import HpimError
from hpim_ir.sim.functional import kernels
from hpim_ir.weights import Weights

PRECISIONS: dict[str, type[np.floating]] = {"fp16": np.float16, "fp32": np.float32}


@dataclass(frozen=True)
class KVCache:
    """The keys and values of the tokens processed so far.

    `rows[(cache, layer)]` is a `[length, width]` array for the `llm.kv_cache` symbol `cache`
    (`key_cache`, `value_cache`) and a layer. A step never modifies a cache: it returns a new
    one, so one cache can be continued several ways.
    """

    length: int = 0
    rows: Mapping[tuple[str, int], np.ndarray] = field(default_factory=dict)


@register_impls
class LlmFunctions(InterpreterFunctions):
    """Numpy implementations of the `llm` ops, holding what one step reads and writes: the
    weights, the KV cache rows (updated by `llm.kv_append`) and the storage dtype."""

    def __init__(
        self, module: ModuleOp, weights: Weights, cache: KVCache, dtype: type[np.floating]
    ):
        self.weights = weights
        self.rows = dict(cache.rows)
        self.dtype = dtype
        self.capacity = {
            op.sym_name.data: op.type.get_shape()[1]
            for op in module.body.block.ops
            if isinstance(op, llm.KVCacheBase)
        }

    def _store(self, value: np.ndarray) -> tuple[np.ndarray]:
        """An op's result, rounded to the storage precision."""
        return (value.astype(self.dtype),)

    @staticmethod
    def _f32(*values: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(value, dtype=np.float32) for value in values]

    @impl(llm.GetWeightOp)
    def run_get_weight(self, interpreter: Interpreter, op: llm.GetWeightOp, args: PythonValues):
        stacked = self.weights.widened(op.weight.root_reference.data)
        return (stacked[args[0]] if args else stacked,)

    @impl(llm.EmbeddingOp)
    def run_embedding(self, interpreter: Interpreter, op: llm.EmbeddingOp, args: PythonValues):
        ids, table = args
        vocab = table.shape[0]
        outside = ids[(ids < 0) | (ids >= vocab)]
        if outside.size:
            raise HpimError(f"token id {outside[0]} is outside the vocabulary 0..{vocab - 1}")
        return self._store(table[ids])

    @impl(llm.PositionEmbeddingOp)
    def run_position_embedding(
        self, interpreter: Interpreter, op: llm.PositionEmbeddingOp, args: PythonValues
    ):
        start, table = args
        offset = op.offset.value.data
        tokens = op.result.type.get_shape()[0]
        positions = table.shape[0] - offset
        if start + tokens > positions:
            raise HpimError(
                f"the context reaches {start + tokens} tokens, beyond the model's "
                f"{positions} positions"
            )
        return self._store(table[start + offset : start + offset + tokens])

    @impl(llm.LayerNormOp)
    def run_layer_norm(self, interpreter: Interpreter, op: llm.LayerNormOp, args: PythonValues):
        return self._store(kernels.layer_norm(*self._f32(*args), op.epsilon.value.data))

    @impl(llm.RMSNormOp)
    def run_rms_norm(self, interpreter: Interpreter, op: llm.RMSNormOp, args: PythonValues):
        return self._store(kernels.rms_norm(*self._f32(*args), op.epsilon.value.data))

    @impl(llm.LinearOp)
    def run_linear(self, interpreter: Interpreter, op: llm.LinearOp, args: PythonValues):
        x, weight, *bias = self._f32(*args)
        product = x @ weight.T
        return self._store(product + bias[0] if bias else product)

    @impl(llm.RoPEOp)
    def run_rope(self, interpreter: Interpreter, op: llm.RoPEOp, args: PythonValues):
        x, start = args
        return self._store(
            kernels.rope(*self._f32(x), start, op.num_heads.value.data, op.theta.value.data)
        )

    @impl(llm.KVAppendOp)
    def run_kv_append(self, interpreter: Interpreter, op: llm.KVAppendOp, args: PythonValues):
        value, position, layer = args
        cache = op.cache.root_reference.data
        held = self.rows.get((cache, layer), np.empty((0, value.shape[1]), self.dtype))
        if position > held.shape[0]:
            raise HpimError(
                f"'{op.name}' writes @{cache}[{layer}] at row {position}, but it holds only "
                f"{held.shape[0]} rows"
            )
        end = position + value.shape[0]
        if end > self.capacity[cache]:
            raise HpimError(
                f"the context reaches {end} tokens, beyond the {self.capacity[cache]} "
                f"positions of @{cache}"
            )
        rows = np.concatenate([held[:position], value], dtype=self.dtype)
        self.rows[(cache, layer)] = rows
        return (rows,)

    @impl(llm.AttentionScoresOp)
    def run_attention_scores(
        self, interpreter: Interpreter, op: llm.AttentionScoresOp, args: PythonValues
    ):
        return self._store(
            kernels.attention_scores(
                *self._f32(*args),
                op.num_heads.value.data,
                op.num_kv_heads.value.data,
                op.scale.value.data,
                op.causal is not None,
            )
        )

    @impl(llm.AttentionValuesOp)
    def run_attention_values(
        self, interpreter: Interpreter, op: llm.AttentionValuesOp, args: PythonValues
    ):
        return self._store(
            kernels.attention_values(
                *self._f32(*args), op.num_heads.value.data, op.num_kv_heads.value.data
            )
        )

    @impl(llm.SoftmaxOp)
    def run_softmax(self, interpreter: Interpreter, op: llm.SoftmaxOp, args: PythonValues):
        return self._store(kernels.softmax(*self._f32(*args)))

    @impl(llm.ReluOp)
    def run_relu(self, interpreter: Interpreter, op: llm.ReluOp, args: PythonValues):
        return self._store(np.maximum(*self._f32(*args), np.float32(0)))

    @impl(llm.GeluOp)
    def run_gelu(self, interpreter: Interpreter, op: llm.GeluOp, args: PythonValues):
        return self._store(kernels.gelu(*self._f32(*args)))

    @impl(llm.SiluOp)
    def run_silu(self, interpreter: Interpreter, op: llm.SiluOp, args: PythonValues):
        return self._store(kernels.silu(*self._f32(*args)))

    @impl(llm.AddOp)
    def run_add(self, interpreter: Interpreter, op: llm.AddOp, args: PythonValues):
        lhs, rhs = self._f32(*args)
        return self._store(lhs + rhs)

    @impl(llm.MulOp)
    def run_mul(self, interpreter: Interpreter, op: llm.MulOp, args: PythonValues):
        lhs, rhs = self._f32(*args)
        return self._store(lhs * rhs)

    @impl(llm.LayersOp)
    def run_layers(self, interpreter: Interpreter, op: llm.LayersOp, args: PythonValues):
        (hidden,) = args
        for layer in range(op.count.value.data):
            (hidden,) = interpreter.run_ssacfg_region(op.body, (layer, hidden), "llm.layers")
        return (hidden,)

    @impl_terminator(llm.YieldOp)
    def run_yield(
        self, interpreter: Interpreter, op: llm.YieldOp, args: PythonValues
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()


def _function(module: ModuleOp, name: str, phase: str) -> func.FuncOp:
    for op in module.body.block.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    raise HpimError(f"the module has no @{name} function (import the model with --phase {phase})")


def _token_ids(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(tokens)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise HpimError(f"tokens must be a sequence of integer ids, got {tokens!r}")
    return ids.astype(np.int64)


def _run(
    module: ModuleOp,
    weights: Weights,
    function: func.FuncOp,
    args: tuple[Any, ...],
    cache: KVCache,
    precision: str,
) -> tuple[np.ndarray, KVCache]:
    """Run `function` with `args`; returns its logits and the cache grown by its tokens."""
    if precision not in PRECISIONS:
        raise HpimError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    try:
        module.verify()
    except VerifyException as error:
        raise HpimError(f"the module does not verify: {error}") from None
    weights.check_fits(module)
    functions = LlmFunctions(module, weights, cache, PRECISIONS[precision])
    interpreter = Interpreter(module)
    for implementations in (ArithFunctions(), FuncFunctions(), functions):
        interpreter.register_implementations(implementations)
    try:
        (logits,) = interpreter.call_op(function, args)
    except InterpretationError as error:
        raise HpimError(f"cannot interpret @{function.sym_name.data}: {error}") from None
    tokens = args[0].shape[0]
    return logits, KVCache(cache.length + tokens, functions.rows)


def run_prefill(
    module: ModuleOp, weights: Weights, tokens: Sequence[int] | np.ndarray, precision: str = "fp16"
) -> tuple[np.ndarray, KVCache]:
    """Run the `@prefill` of a module on a prompt: its logits `[S, vocab]` (row s predicts the
    token after `tokens[:s+1]`) and the KV cache of the prompt."""
    function = _function(module, "prefill", "prefill")
    ids = _token_ids(tokens)
    ids_type = function.function_type.inputs.data[0]
    assert isinstance(ids_type, TensorType)
    (expected,) = ids_type.get_shape()
    if ids.shape[0] != expected:
        raise HpimError(f"the @prefill module takes {expected} tokens, got {ids.shape[0]}")
    return _run(module, weights, function, (ids,), KVCache(), precision)


def run_decode(
    module: ModuleOp, weights: Weights, token: int, cache: KVCache, precision: str = "fp16"
) -> tuple[np.ndarray, KVCache]:
    """Run the `@decode_step` of a module for one token after the context held in `cache`:
    its logits `[1, vocab]` and the cache grown by the token (`cache` itself is unchanged)."""
    function = _function(module, "decode_step", "decode")
    inputs = function.function_type.inputs.data
    assert len(inputs) == 2 and isinstance(inputs[1], IndexType)
    return _run(module, weights, function, (_token_ids([token]), cache.length), cache, precision)
