"""`llm-annotate`: classify every `llm` compute op as GEMV, GEMM, nonlinear or memory work."""

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation
from xdsl.passes import ModulePass

from hpim_ir.dialects import llm
from hpim_ir.errors import HpimError

KIND_ATTR = "llm.kind"
KINDS = ("gemv", "gemm", "nonlinear", "memory")

_MATRIX = (llm.LinearOp, llm.AttentionScoresOp, llm.AttentionValuesOp)
_MEMORY = (llm.KVAppendOp, llm.GetWeightOp, llm.EmbeddingOp, llm.PositionEmbeddingOp)


def step_tokens(module: ModuleOp) -> int:
    """Tokens processed by the module's step (1 for a decode step), from `llm.model`; it
    must be what the step's function takes (its first argument, `tensor<Nxi32>`)."""
    info = module.attributes.get("llm.model")
    try:
        tokens = info.data["tokens"].value.data  # type: ignore[union-attr]
    except (AttributeError, KeyError):
        raise HpimError(
            "module has no llm.model attribute with 'tokens'; import it with `hpim import`"
        ) from None
    for function in module.ops:
        if not isinstance(function, func.FuncOp) or not function.args:
            continue
        ids = function.args[0].type
        if isinstance(ids, TensorType) and ids.get_shape() != (tokens,):
            raise HpimError(
                f"llm.model gives tokens = {tokens}, but @{function.sym_name.data} takes "
                f"{ids} (its first argument: the step's token ids)"
            )
    return tokens


def kind_of(op: Operation, tokens: int) -> str | None:
    """The work class of an llm op in a step of `tokens` tokens (None for non-compute ops).

    A matrix product with one token is a GEMV (each weight is used once: memory-bound, the
    HBM-PIM's work); with many it is a GEMM (weights reused: compute-bound, the TCU's work).
    """
    if isinstance(op, _MATRIX):
        return "gemv" if tokens == 1 else "gemm"
    if isinstance(op, _MEMORY):
        return "memory"
    if op.dialect_name() == "llm" and not isinstance(op, (llm.LayersOp, llm.YieldOp)):
        if isinstance(op, (llm.WeightOp, llm.KVCacheOp)):
            return None
        return "nonlinear"
    return None


@dataclass(frozen=True)
class LlmAnnotatePass(ModulePass):
    """Annotate each `llm` compute op with `llm.kind`: `gemv`, `gemm`, `nonlinear` or
    `memory` (the paper's compiler step 1).

    Linear layers and the two attention products are `gemv` in a decode step (one token) and
    `gemm` in a prefill; softmax, norms, activations, RoPE and residual adds are
    `nonlinear`; reads and writes of stored tensors (`llm.get_weight`, the embedding lookups,
    `llm.kv_append`) are `memory`. The partitioning policies
    of `convert-llm-to-pim` decide placement from these kinds. Idempotent.
    """

    name = "llm-annotate"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        tokens = step_tokens(op)
        for inner in op.walk():
            kind = kind_of(inner, tokens)
            if kind is not None:
                inner.attributes[KIND_ATTR] = StringAttr(kind)
