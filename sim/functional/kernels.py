"""The arithmetic of the `llm` ops in FP32, with numpy.

Each kernel takes FP32 arrays and returns FP32; rounding to the storage precision between ops
is the caller's (`hpim_ir.sim.functional.llm`). Matrix products and reductions (means,
variances, softmax sums) accumulate in FP32. Attention tensors follow the `llm` dialect's
layout: a `[S, heads * head_dim]` tensor is the heads side by side, scores are `[H, S, T]`,
and query head h reads key/value head `h // (H / Hkv)` (grouped-query attention).
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float) -> np.ndarray:
    """`(x - mean) / sqrt(var + epsilon) * gamma + beta` over the last dimension."""
    centered = x - x.mean(axis=-1, keepdims=True)
    variance = np.mean(centered * centered, axis=-1, keepdims=True)
    return centered / np.sqrt(variance + F32(epsilon)) * gamma + beta


def rms_norm(x: np.ndarray, gamma: np.ndarray, epsilon: float) -> np.ndarray:
    """`x / sqrt(mean(x^2) + epsilon) * gamma` over the last dimension."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + F32(epsilon)) * gamma


def rope(x: np.ndarray, start: int, num_heads: int, theta: float) -> np.ndarray:
    """Rotary embedding, rotate-half form, of every head of `x` `[S, heads * d]`; token s is
    at position `start + s`. Frequency i of a head is `theta ** (-2i / d)`, as transformers
    computes it."""
    tokens, features = x.shape
    head_dim = features // num_heads
    inv_freq = F32(1) / F32(theta) ** (np.arange(0, head_dim, 2, dtype=F32) / F32(head_dim))
    angles = np.arange(start, start + tokens, dtype=F32)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]  # [S, 1, d/2]
    heads = x.reshape(tokens, num_heads, head_dim)
    first, second = heads[..., : head_dim // 2], heads[..., head_dim // 2 :]
    rotated = np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return rotated.reshape(tokens, features)


def attention_scores(
    query: np.ndarray,
    keys: np.ndarray,
    num_heads: int,
    num_kv_heads: int,
    scale: float,
    causal: bool,
) -> np.ndarray:
    """`scale * q . K^T` per head, `[S, H*d] x [T, Hkv*d] -> [H, S, T]`. With `causal`, query s
    (at position T - S + s) sees keys up to its own position; the others score -inf."""
    tokens, context = query.shape[0], keys.shape[0]
    head_dim = query.shape[1] // num_heads
    group = num_heads // num_kv_heads
    # One batched matrix product per KV head, its query heads' rows stacked: [Hkv, G*S, d].
    q = query.reshape(tokens, num_kv_heads, group, head_dim).transpose(1, 2, 0, 3)
    k = keys.reshape(context, num_kv_heads, head_dim).transpose(1, 2, 0)  # [Hkv, d, T]
    product = q.reshape(num_kv_heads, group * tokens, head_dim) @ k
    scores = product.reshape(num_heads, tokens, context) * F32(scale)
    if causal:
        future = np.arange(context)[None, :] > np.arange(context - tokens, context)[:, None]
        scores[:, future] = -np.inf
    return scores


def attention_values(
    probs: np.ndarray, values: np.ndarray, num_heads: int, num_kv_heads: int
) -> np.ndarray:
    """`probs . V` per head, `[H, S, T] x [T, Hkv*d] -> [S, H*d]` (heads side by side)."""
    _, tokens, context = probs.shape
    head_dim = values.shape[1] // num_kv_heads
    group = num_heads // num_kv_heads
    p = probs.reshape(num_kv_heads, group * tokens, context)
    v = values.reshape(context, num_kv_heads, head_dim).transpose(1, 0, 2)  # [Hkv, T, d]
    out = (p @ v).reshape(num_kv_heads, group, tokens, head_dim).transpose(2, 0, 1, 3)
    return out.reshape(tokens, num_heads * head_dim)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last dimension (max-subtracted, so -inf scores give 0)."""
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation."""
    return F32(0.5) * x * (F32(1) + np.tanh(F32(np.sqrt(2 / np.pi)) * (x + F32(0.044715) * x**3)))


def silu(x: np.ndarray) -> np.ndarray:
    """`x * sigmoid(x)`, the sigmoid as `(1 + tanh(x / 2)) / 2` (no overflow for large |x|)."""
    return x * (F32(0.5) + F32(0.5) * np.tanh(F32(0.5) * x))
