"""Builds the `llm` dialect module of a model: one function, a decode step or a prefill.

The layer body is emitted once inside `llm.layers`; layered weights stack every layer. The
decode step is `@decode_step(%tokens: tensor<1xi32>, %position: index) -> logits`: `%position`
is the number of tokens already in the KV cache, so one module serves every generated token.
The prefill is `@prefill(%tokens: tensor<Sxi32>) -> logits` for a prompt of S tokens.

Symbol names are short (`@q_proj`, `@fc1`); `hf_name` gives the checkpoint tensor's name.
"""

from __future__ import annotations

from xdsl.builder import Builder, InsertPoint
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    DictionaryAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f16,
    i32,
    i64,
)
from xdsl.ir import Block, Region, SSAValue

from hpim_ir.dialects import llm
from hpim_ir.errors import HpimError
from hpim_ir.frontend.config import ModelConfig, attention_scale, check_prompt

PHASES = ("decode", "prefill")


def _t(*shape: int) -> TensorType:
    return TensorType(f16, shape)


class _Weights:
    """Declares weight symbols at module level and fetches their values where needed."""

    def __init__(self, module_body: Block, config: ModelConfig):
        self.decls = module_body
        self.config = config
        self.prefix = "model.decoder." if config.family == "opt" else "model."

    def declare(self, sym: str, shape: tuple[int, ...], hf_leaf: str, layered: bool) -> None:
        if layered:
            hf_name = f"{self.prefix}layers.{{layer}}.{hf_leaf}"
            shape = (self.config.layers, *shape)
        else:
            hf_name = hf_leaf if hf_leaf.startswith("lm_head") else self.prefix + hf_leaf
        self.decls.add_op(llm.WeightOp(sym, _t(*shape), hf_name, layered))

    def get(self, b: Builder, sym: str, layer: SSAValue | None = None) -> SSAValue:
        decl = next(
            op for op in self.decls.ops if isinstance(op, llm.WeightOp) and op.sym_name.data == sym
        )
        shape = decl.type.get_shape()[1:] if layer is not None else decl.type.get_shape()
        return b.insert(llm.GetWeightOp(sym, _t(*shape), layer)).result


def _declare_weights(w: _Weights, c: ModelConfig) -> None:
    """Every parameter of the model, with its Hugging Face name."""
    w.declare("embed_tokens", (c.vocab_size, c.embed_dim), "embed_tokens.weight", False)
    if c.learned_positions:
        w.declare(
            "embed_positions",
            (c.max_positions + c.position_offset, c.hidden),
            "embed_positions.weight",
            False,
        )
    if c.embed_dim != c.hidden:
        w.declare("project_in", (c.hidden, c.embed_dim), "project_in.weight", False)
        w.declare("project_out", (c.embed_dim, c.hidden), "project_out.weight", False)

    opt = c.family == "opt"
    attn = "self_attn."
    projections = [
        ("q_proj", c.q_width, c.hidden),
        ("k_proj", c.kv_width, c.hidden),
        ("v_proj", c.kv_width, c.hidden),
        ("o_proj", c.hidden, c.q_width),
    ]
    for sym, out, inp in projections:
        leaf = attn + ("out_proj" if sym == "o_proj" and opt else sym)
        w.declare(sym, (out, inp), f"{leaf}.weight", True)
        if c.bias:
            w.declare(f"{sym}.bias", (out,), f"{leaf}.bias", True)
    if c.gated_ffn:
        for sym, out, inp in (
            ("gate_proj", c.ffn, c.hidden),
            ("up_proj", c.ffn, c.hidden),
            ("down_proj", c.hidden, c.ffn),
        ):
            w.declare(sym, (out, inp), f"mlp.{sym}.weight", True)
    else:
        for sym, out, inp in (("fc1", c.ffn, c.hidden), ("fc2", c.hidden, c.ffn)):
            w.declare(sym, (out, inp), f"{sym}.weight", True)
            if c.bias:
                w.declare(f"{sym}.bias", (out,), f"{sym}.bias", True)

    norms = (
        [("attn_norm", "self_attn_layer_norm"), ("ffn_norm", "final_layer_norm")]
        if opt
        else [("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")]
    )
    for sym, leaf in norms:
        w.declare(sym, (c.hidden,), f"{leaf}.weight", True)
        if c.norm == "layer_norm":
            w.declare(f"{sym}.bias", (c.hidden,), f"{leaf}.bias", True)
    if c.final_norm:
        leaf = "final_layer_norm" if opt else "norm"
        w.declare("final_norm", (c.hidden,), f"{leaf}.weight", False)
        if c.norm == "layer_norm":
            w.declare("final_norm.bias", (c.hidden,), f"{leaf}.bias", False)
    if not c.tied_lm_head:
        w.declare("lm_head", (c.vocab_size, c.embed_dim), "lm_head.weight", False)


class _Emitter:
    """Emits the computation of one phase with a builder."""

    def __init__(self, b: Builder, w: _Weights, c: ModelConfig, tokens: int, position: SSAValue):
        self.b, self.w, self.c = b, w, c
        self.tokens = tokens
        self.position = position

    def linear(self, x: SSAValue, sym: str, layer: SSAValue | None) -> SSAValue:
        weight = self.w.get(self.b, sym, layer)
        bias = self.w.get(self.b, f"{sym}.bias", layer) if self.c.bias else None
        return self.b.insert(llm.LinearOp(x, weight, bias)).result

    def norm(self, x: SSAValue, sym: str, layer: SSAValue | None) -> SSAValue:
        gamma = self.w.get(self.b, sym, layer)
        if self.c.norm == "layer_norm":
            beta = self.w.get(self.b, f"{sym}.bias", layer)
            return self.b.insert(llm.LayerNormOp(x, gamma, beta, self.c.norm_eps)).result
        return self.b.insert(llm.RMSNormOp(x, gamma, self.c.norm_eps)).result

    def attention(self, x: SSAValue, layer: SSAValue) -> SSAValue:
        c, b = self.c, self.b
        q = self.linear(x, "q_proj", layer)
        k = self.linear(x, "k_proj", layer)
        if not c.learned_positions:
            q = b.insert(llm.RoPEOp(q, self.position, c.heads, c.rope_theta)).result
            k = b.insert(llm.RoPEOp(k, self.position, c.kv_heads, c.rope_theta)).result
        keys = b.insert(llm.KVAppendOp(k, "key_cache", layer, self.position)).result
        scores = b.insert(
            llm.AttentionScoresOp(
                q, keys, c.heads, c.kv_heads, attention_scale(c), causal=self.tokens > 1
            )
        ).result
        probs = b.insert(llm.SoftmaxOp(scores)).result
        v = self.linear(x, "v_proj", layer)
        values = b.insert(llm.KVAppendOp(v, "value_cache", layer, self.position)).result
        context = b.insert(llm.AttentionValuesOp(probs, values, c.heads, c.kv_heads)).result
        return self.linear(context, "o_proj", layer)

    def ffn(self, x: SSAValue, layer: SSAValue) -> SSAValue:
        c, b = self.c, self.b
        if c.gated_ffn:
            gate = b.insert(llm.SiluOp(self.linear(x, "gate_proj", layer))).result
            up = self.linear(x, "up_proj", layer)
            return self.linear(b.insert(llm.MulOp(gate, up)).result, "down_proj", layer)
        act = llm.ReluOp if c.activation == "relu" else llm.GeluOp
        hidden = b.insert(act(self.linear(x, "fc1", layer))).result
        return self.linear(hidden, "fc2", layer)

    def block(self, x: SSAValue, layer: SSAValue) -> SSAValue:
        """One decoder layer, pre-norm (x + f(norm(x))) or post-norm (norm(x + f(x)))."""
        b = self.b
        for sublayer, norm in ((self.attention, "attn_norm"), (self.ffn, "ffn_norm")):
            if self.c.pre_norm:
                x = b.insert(llm.AddOp(x, sublayer(self.norm(x, norm, layer), layer))).result
            else:
                x = self.norm(b.insert(llm.AddOp(x, sublayer(x, layer))).result, norm, layer)
        return x

    def model(self, ids: SSAValue) -> SSAValue:
        c, b = self.c, self.b
        table = self.w.get(b, "embed_tokens")
        x = b.insert(llm.EmbeddingOp(ids, table)).result
        if c.embed_dim != c.hidden:
            x = b.insert(llm.LinearOp(x, self.w.get(b, "project_in"))).result
        if c.learned_positions:
            positions = self.w.get(b, "embed_positions")
            pos = b.insert(
                llm.PositionEmbeddingOp(self.position, positions, self.tokens, c.position_offset)
            ).result
            x = b.insert(llm.AddOp(x, pos)).result

        body = Block(arg_types=[IndexType(), x.type])
        layer_builder = Builder(InsertPoint.at_end(body))
        inner = _Emitter(layer_builder, self.w, c, self.tokens, self.position)
        layer_builder.insert(llm.YieldOp(inner.block(body.args[1], body.args[0])))
        x = b.insert(llm.LayersOp(c.layers, x, Region(body))).result

        if c.final_norm:
            x = self.norm(x, "final_norm", None)
        if c.embed_dim != c.hidden:
            x = b.insert(llm.LinearOp(x, self.w.get(b, "project_out"))).result
        head = self.w.get(b, "embed_tokens" if c.tied_lm_head else "lm_head")
        return b.insert(llm.LinearOp(x, head)).result


def _model_attributes(c: ModelConfig, phase: str, tokens: int) -> DictionaryAttr:
    def attr(value: object):
        if isinstance(value, bool):
            return IntegerAttr(int(value), 1)
        if isinstance(value, int):
            return IntegerAttr(value, i64)
        if isinstance(value, float):
            return FloatAttr(value, 64)
        return StringAttr(str(value))

    fields = dict(vars(c))
    fields.update(phase=phase, tokens=tokens)
    return DictionaryAttr({key: attr(value) for key, value in fields.items()})


def build_module(config: ModelConfig, phase: str = "decode", prompt: int = 256) -> ModuleOp:
    """The `llm` module of one phase: `decode` (one token, symbolic context) or `prefill`
    (`prompt` tokens from position 0)."""
    if phase not in PHASES:
        raise HpimError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
    c = config
    tokens = 1 if phase == "decode" else prompt
    if phase == "prefill":
        check_prompt(c, prompt)

    module = ModuleOp([])
    module.attributes["llm.model"] = _model_attributes(c, phase, tokens)
    weights = _Weights(module.body.block, c)
    _declare_weights(weights, c)
    cache_type = _t(c.layers, c.max_positions, c.kv_width)
    module.body.block.add_ops(
        [llm.KVCacheOp("key_cache", cache_type), llm.KVCacheOp("value_cache", cache_type)]
    )

    ids_type = TensorType(i32, [tokens])
    logits_type = _t(tokens, c.vocab_size)
    inputs = [ids_type, IndexType()] if phase == "decode" else [ids_type]
    name = "decode_step" if phase == "decode" else "prefill"
    function = func.FuncOp(name, (inputs, [logits_type]))
    b = Builder(InsertPoint.at_end(function.body.block))
    if phase == "decode":
        position = function.args[1]
    else:
        position = b.insert(arith.ConstantOp.from_int_and_width(0, IndexType())).result
    logits = _Emitter(b, weights, c, tokens, position).model(function.args[0])
    b.insert(func.ReturnOp(logits))
    module.body.block.add_op(function)
    return module
