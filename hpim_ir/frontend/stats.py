"""Model statistics read off an `llm` module: what `hpim import --stats` prints.

They are computed from the IR, not from the config, so they also check the import: the
parameter count is the sum of the weight symbols, the FLOPs those of the ops in the function
(ops inside `llm.layers` counted once per layer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from hpim_ir.dialects import llm

BYTES_FP16 = 2


@dataclass(frozen=True)
class ModelStats:
    """Sizes and work of one imported phase. FLOPs count multiply-adds as 2 and cover the
    matrix products (linear layers and attention); element-wise work is not included."""

    model: str
    family: str
    phase: str
    tokens: int  # tokens of the step: 1 in decode, the prompt in prefill
    parameters: int
    weight_bytes_fp16: int
    kv_cache_bytes_per_token: int
    flops_fixed: int  # FLOPs of the step that do not depend on the context length
    flops_per_context_token: int  # added per token already in the context (attention)

    def flops_at(self, context: int) -> int:
        """FLOPs of the step when `context` tokens are in the KV cache after it."""
        return self.flops_fixed + self.flops_per_context_token * context

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _flops(op: Operation, tokens: int) -> tuple[int, int]:
    """(fixed, per context token) FLOPs of one op."""
    if isinstance(op, llm.LinearOp):
        out, inp = op.weight.type.get_shape()  # type: ignore[union-attr]
        return 2 * tokens * out * inp + (tokens * out if op.bias is not None else 0), 0
    if isinstance(op, (llm.AttentionScoresOp, llm.AttentionValuesOp)):
        # Both products are 2 * heads * head_dim FLOPs per (query, key) pair.
        features = op.result.type.get_shape()[-1] if isinstance(op, llm.AttentionValuesOp) else (
            op.query.type.get_shape()[-1]  # type: ignore[union-attr]
        )
        return 0, 2 * tokens * features
    return 0, 0


def model_stats(module: ModuleOp) -> ModelStats:
    info = module.attributes["llm.model"].data  # type: ignore[union-attr]
    tokens = info["tokens"].value.data
    parameters = sum(op.num_elements for op in module.ops if isinstance(op, llm.WeightOp))
    kv_bytes = sum(
        op.type.get_shape()[0] * op.type.get_shape()[2] * BYTES_FP16
        for op in module.ops
        if isinstance(op, llm.KVCacheOp)
    )
    fixed = per_context = 0
    for op in module.walk():
        repeat = op.parent_op().count.value.data if isinstance(op.parent_op(), llm.LayersOp) else 1
        f, p = _flops(op, tokens)
        fixed += repeat * f
        per_context += repeat * p
    return ModelStats(
        model=info["name"].data,
        family=info["family"].data,
        phase=info["phase"].data,
        tokens=tokens,
        parameters=parameters,
        weight_bytes_fp16=parameters * BYTES_FP16,
        kv_cache_bytes_per_token=kv_bytes,
        flops_fixed=fixed,
        flops_per_context_token=per_context,
    )
