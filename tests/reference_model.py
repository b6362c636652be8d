"""An independent reference forward pass of OPT and LLaMA, to check hpim's values against.

Written from the semantics of Hugging Face transformers' `modeling_opt.py` and
`modeling_llama.py`, in plain numpy and FP32 throughout. It reads `config.json` keys (with
transformers' defaults) and checkpoint tensors by their Hugging Face names itself, and shares
no code with hpim's frontend, IR, weights loader or interpreter. `reference_logits` computes
the logits of every position of a token sequence in one pass with a causal mask (no KV cache),
in the `[heads, tokens, head_dim]` layout transformers uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`config.json` and the tensors of `model.safetensors`, as FP32."""
    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    return config, {name: value.astype(np.float32) for name, value in tensors.items()}


def _linear(x: np.ndarray, t: dict[str, np.ndarray], name: str, bias: bool) -> np.ndarray:
    y = x @ t[f"{name}.weight"].T
    return y + t[f"{name}.bias"] if bias else y


def _layer_norm(x: np.ndarray, t: dict[str, np.ndarray], name: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mean) / np.sqrt(var + 1e-5) * t[f"{name}.weight"] + t[f"{name}.bias"]


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = (x**2).mean(-1, keepdims=True)
    return weight * (x / np.sqrt(variance + eps))


def _heads(x: np.ndarray, n: int) -> np.ndarray:
    """[T, n*d] -> [n, T, d]"""
    tokens = x.shape[0]
    return x.reshape(tokens, n, -1).transpose(1, 0, 2)


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Causal attention of [H, T, d] tensors -> [T, H*d]."""
    tokens = q.shape[1]
    scores = (q * scale) @ k.transpose(0, 2, 1)
    mask = np.triu(np.ones((tokens, tokens), dtype=bool), k=1)
    scores = np.where(mask, np.finfo(np.float32).min, scores)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    out = probs @ v  # [H, T, d]
    return out.transpose(1, 0, 2).reshape(tokens, -1)


def _opt(config: dict[str, Any], t: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """OPTForCausalLM: learned positions (offset 2), pre- or post-LN decoder layers with ReLU
    FFN, optional project_in/out (word_embed_proj_dim != hidden_size), tied LM head."""
    if config.get("activation_function", "relu") != "relu":
        raise NotImplementedError("the reference implements OPT's ReLU FFN only")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    embed_dim = config.get("word_embed_proj_dim", hidden)
    before = config.get("do_layer_norm_before", True)
    bias = config.get("enable_bias", True)
    d = "model.decoder."
    x = t[d + "embed_tokens.weight"][ids]
    if embed_dim != hidden:
        x = x @ t[d + "project_in.weight"].T
    positions = np.arange(len(ids)) + 2  # OPTLearnedPositionalEmbedding.offset
    x = x + t[d + "embed_positions.weight"][positions]
    scale = (hidden // heads) ** -0.5
    for i in range(config["num_hidden_layers"]):
        p = f"{d}layers.{i}."
        residual = x
        if before:
            x = _layer_norm(x, t, p + "self_attn_layer_norm")
        q = _heads(_linear(x, t, p + "self_attn.q_proj", bias), heads)
        k = _heads(_linear(x, t, p + "self_attn.k_proj", bias), heads)
        v = _heads(_linear(x, t, p + "self_attn.v_proj", bias), heads)
        x = residual + _linear(_attend(q, k, v, scale), t, p + "self_attn.out_proj", bias)
        if not before:
            x = _layer_norm(x, t, p + "self_attn_layer_norm")
        residual = x
        if before:
            x = _layer_norm(x, t, p + "final_layer_norm")
        x = np.maximum(_linear(x, t, p + "fc1", bias), 0)
        x = residual + _linear(x, t, p + "fc2", bias)
        if not before:
            x = _layer_norm(x, t, p + "final_layer_norm")
    if before and not config.get("_remove_final_layer_norm", False):
        x = _layer_norm(x, t, d + "final_layer_norm")
    if embed_dim != hidden:
        x = x @ t[d + "project_out.weight"].T
    tied = config.get("tie_word_embeddings", True)
    return x @ t[d + "embed_tokens.weight" if tied else "lm_head.weight"].T


def _rotate_half(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _llama(config: dict[str, Any], t: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """LlamaForCausalLM: RMSNorm, RoPE (rotate-half), SwiGLU, grouped-query attention
    (repeat_kv), untied LM head unless tie_word_embeddings."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim", hidden // heads)
    eps = config.get("rms_norm_eps", 1e-6)
    theta = config.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    freqs = np.outer(np.arange(len(ids), dtype=np.float32), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)  # [T, d], broadcast over heads
    x = t["model.embed_tokens.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = _rms_norm(x, t[p + "input_layernorm.weight"], eps)
        q = _heads(_linear(h, t, p + "self_attn.q_proj", False), heads)
        k = _heads(_linear(h, t, p + "self_attn.k_proj", False), kv_heads)
        v = _heads(_linear(h, t, p + "self_attn.v_proj", False), kv_heads)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = np.repeat(k, heads // kv_heads, axis=0)  # repeat_kv: kv head j serves heads j*n..
        v = np.repeat(v, heads // kv_heads, axis=0)
        x = x + _linear(_attend(q, k, v, head_dim**-0.5), t, p + "self_attn.o_proj", False)
        h = _rms_norm(x, t[p + "post_attention_layernorm.weight"], eps)
        gate = _linear(h, t, p + "mlp.gate_proj", False)
        up = _linear(h, t, p + "mlp.up_proj", False)
        x = x + _linear(gate / (1 + np.exp(-gate)) * up, t, p + "mlp.down_proj", False)
    x = _rms_norm(x, t["model.norm.weight"], eps)
    tied = config.get("tie_word_embeddings", False)
    return x @ t["model.embed_tokens.weight" if tied else "lm_head.weight"].T


def reference_logits(
    config: dict[str, Any], tensors: dict[str, np.ndarray], tokens: list[int] | np.ndarray
) -> np.ndarray:
    """Logits `[T, vocab]` (FP32): row i predicts the token after `tokens[:i+1]`."""
    forward = {"opt": _opt, "llama": _llama}[config["model_type"]]
    return forward(config, tensors, np.asarray(tokens)).astype(np.float32)
