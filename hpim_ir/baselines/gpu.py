"""An analytic GPU model of LLM inference: the A100 baselines hpim compares against.

Every transformer layer is a list of kernels, as the software stack launches them. A kernel
moves `bytes` through device memory and executes `flops`; one launch of it takes

    max(bytes / achieved bandwidth, flops / achieved FP16 tensor throughput) + kernel overhead

and a forward pass (the prefill, or one decode step) adds a fixed per-step overhead (sampling,
host synchronisation). Achieved bandwidth and throughput are the part's peak times a
calibrated efficiency. What differs between software stacks is the kernel list: an optimized
serving stack (FasterTransformer, TensorRT-LLM) fuses Q/K/V into one GEMM and the whole
attention (RoPE, KV append, q.K^T, softmax, s.V) into one kernel that streams the KV cache
once; PyTorch eager (Hugging Face `generate`) launches many small element-wise kernels,
materializes the score matrix and, with the default cache, copies the whole KV cache on every
step (`torch.cat`). The stack is described in the preset (`StackSpec`), not in code.

The work of a phase (bytes, FLOPs, launches per kernel) does not depend on the GPU's
parameters, so it is computed once (`phase_work`) and priced by `PhaseWork.price`; the
calibration (`hpim_ir.baselines.calibration`) prices the same work under many parameter sets.
Decode steps are vectorized over the context length: step `i` of `generate` has
`prompt + i` tokens in the KV cache before it (the convention of the `llm` dialect's
`%position`) and attends over `prompt + i + 1` keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.frontend.config import ModelConfig, check_prompt

BYTES_FP16 = 2
GIB = 1 << 30

# The parts of a layer a breakdown reports, in order (the HPIM paper's per-part comparison).
PARTS = ("qkv", "attention", "attention_proj", "ffn", "other")


@dataclass(frozen=True)
class StackSpec:
    """How a software stack runs a transformer layer.

    `fused_qkv` / `fused_gate_up`: Q, K, V (and a SwiGLU FFN's gate and up projections) are
    one GEMM. `attention`: `fused` is one kernel per layer that reads Q and streams the KV
    cache once; `unfused` is q.K^T and s.V as batched GEMMs around a materialized score matrix
    (softmax in FP32 and the cast back, plus `launches["attention"]` score-sized passes for
    scaling and masking). `kv_cache`: `preallocated` writes only the new tokens' K and V;
    `concat` rewrites the whole cache every step. `prefill_logits`: `last` runs the LM head
    on the prompt's last token only, `all` on every prompt token. `launches` counts the
    element-wise kernels besides the GEMMs and attention: per normalization (`layer_norm`,
    `rms_norm`), and per layer for RoPE (`rotary`), the two residual adds (`residual`), the
    FFN activation (`activation`), a gated FFN's product (`gate_product`) and the
    activation-sized copies around unfused attention (`attention`: transposes, scaling).
    """

    fused_qkv: bool
    fused_gate_up: bool
    attention: str  # "fused" | "unfused"
    kv_cache: str  # "preallocated" | "concat"
    prefill_logits: str  # "last" | "all"
    launches: dict[str, int]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU baseline: the part's peaks, the calibrated efficiencies and overheads, and the
    software stack. Built by `hpim_ir.baselines.presets` from a validated TOML file."""

    name: str
    description: str
    part: str
    memory_gib: float
    bandwidth_gb_s: float  # peak DRAM bandwidth, 1e9 bytes/s
    fp16_tflops: float  # peak dense FP16 tensor throughput, 1e12 FLOP/s
    bandwidth_efficiency: float  # achieved / peak bandwidth when streaming weights and KV
    compute_efficiency: float  # achieved / peak tensor throughput in GEMMs
    kernel_us: float  # per kernel launch
    step_us: float  # per forward pass (the prefill or one decode step)
    stack: StackSpec

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


@dataclass(frozen=True)
class Kernel:
    """One kernel of a phase: per launch the bytes it moves and the FLOPs it executes (a
    scalar, or an array over the phase's steps where it depends on the context length);
    `launches` of it per layer (`per_layer`) or per forward pass."""

    name: str
    part: str
    launches: int
    bytes: Any
    flops: Any
    per_layer: bool = True


def phase_kernels(
    config: ModelConfig, stack: StackSpec, tokens: int, past: np.ndarray, batch: int
) -> list[Kernel]:
    """The kernels of one forward pass of `tokens` new tokens per sequence, `past` tokens
    already in the KV cache (an array: one entry per step), for `batch` sequences."""
    w = BYTES_FP16
    rows = batch * tokens  # GEMM rows
    h, qw, kw, f = config.hidden, config.q_width, config.kv_width, config.ffn
    ctx = past + tokens  # keys the last new token attends over
    launches = stack.launches
    kernels: list[Kernel] = []

    def gemm(name: str, part: str, n_in: int, n_out: int, *, per_layer: bool = True,
             m: int = rows, bias: bool = config.bias) -> None:
        moved = w * (n_in * n_out + m * (n_in + n_out) + (n_out if bias else 0))
        kernels.append(Kernel(name, part, 1, moved, 2 * m * n_in * n_out, per_layer))

    def elementwise(name: str, part: str, count: int, moved: Any, per_layer: bool = True) -> None:
        if count:
            kernels.append(Kernel(name, part, count, moved, 0, per_layer))

    norm_launches = launches[config.norm]
    elementwise("norm", "other", 2 * norm_launches, w * rows * h * 2)
    if stack.fused_qkv:
        gemm("qkv_proj", "qkv", h, qw + 2 * kw)
    else:
        for name, width in (("q_proj", qw), ("k_proj", kw), ("v_proj", kw)):
            gemm(name, "qkv", h, width)
    if not config.learned_positions:
        elementwise("rotary", "attention", launches["rotary"], w * rows * (qw + kw) * 2)
    if stack.attention == "fused":
        # Causal (query, key) pairs: each new token attends over the cache and the new
        # tokens up to itself; q.K^T and s.V are 2 FLOPs per multiply-add each.
        pairs = tokens * past + tokens * (tokens + 1) // 2
        moved = w * batch * (2 * kw * ctx + 2 * kw * tokens + 2 * qw * tokens)
        kernels.append(Kernel("attention", "attention", 1, moved, 4 * batch * qw * pairs))
    else:
        # Per launch (K, then V): `concat` reads the old cache and the new tokens and writes
        # the whole new cache; `preallocated` reads and writes the new tokens only.
        appended = ctx if stack.kv_cache == "concat" else tokens
        elementwise("kv_append", "attention", 2, w * batch * 2 * kw * appended)
        scores = batch * config.heads * tokens * ctx  # the full rectangle, masked afterwards
        product = 2 * batch * qw * tokens * ctx
        kernels.append(Kernel("scores", "attention", 1,
                              w * (scores + batch * (qw * tokens + kw * ctx)), product))
        elementwise("attention_copies", "attention", launches["attention"], w * rows * qw * 2)
        # Two passes over the scores (scaling or clamping, the mask), then the FP32 softmax
        # and the cast back, which read 2 or 4 and write 4 or 2 bytes per score.
        elementwise("score_passes", "attention", 2, w * scores * 2)
        elementwise("softmax", "attention", 2, 6 * scores)
        kernels.append(Kernel("values", "attention", 1,
                              w * (scores + batch * (kw * ctx + qw * tokens)), product))
    gemm("o_proj", "attention_proj", qw, h)
    elementwise("residual", "other", launches["residual"], w * rows * h * 3)
    if config.gated_ffn:
        if stack.fused_gate_up:
            gemm("gate_up_proj", "ffn", h, 2 * f)
        else:
            gemm("gate_proj", "ffn", h, f)
            gemm("up_proj", "ffn", h, f)
        elementwise("activation", "ffn", launches["activation"], w * rows * f * 3)
        elementwise("gate_product", "ffn", launches["gate_product"], w * rows * f * 3)
    else:
        gemm("fc1", "ffn", h, f)
        elementwise("activation", "ffn", launches["activation"], w * rows * f * 2)
    gemm("down_proj" if config.gated_ffn else "fc2", "ffn", f, h)

    # Once per forward pass: embedding (and learned positions), the OPT-350m projections
    # between the embedding width and the hidden width, the final norm and the LM head.
    e = config.embed_dim
    elementwise("embedding", "other", 2 if config.learned_positions else 1, w * rows * e * 2,
                per_layer=False)
    if e != h:
        gemm("project_in", "other", e, h, per_layer=False, bias=False)
        gemm("project_out", "other", h, e, per_layer=False, bias=False)
    if config.final_norm:
        elementwise("final_norm", "other", norm_launches, w * rows * h * 2, per_layer=False)
    logits_rows = batch if stack.prefill_logits == "last" else rows
    gemm("lm_head", "other", e, config.vocab_size, per_layer=False, m=logits_rows, bias=False)
    return kernels


@dataclass(frozen=True)
class PhaseWork:
    """The parameter-free work of a phase, one row per (kernel, step): the bytes and FLOPs of
    one launch, how many launches (layers included), and the row's part."""

    part: np.ndarray  # index into PARTS
    bytes: np.ndarray
    flops: np.ndarray
    launches: np.ndarray
    steps: int

    def roofline_ms(self, spec: GpuSpec) -> np.ndarray:
        """Per row: launches x max(bytes / achieved bandwidth, flops / achieved compute)."""
        bandwidth = spec.bandwidth_gb_s * 1e6 * spec.bandwidth_efficiency  # bytes per ms
        compute = spec.fp16_tflops * 1e9 * spec.compute_efficiency  # FLOPs per ms
        return self.launches * np.maximum(self.bytes / bandwidth, self.flops / compute)

    def price(self, spec: GpuSpec) -> dict[str, float]:
        """Milliseconds per part for the whole phase; the per-step overhead goes to `other`."""
        per_row = self.roofline_ms(spec) + self.launches * spec.kernel_us * 1e-3
        times = np.bincount(self.part, weights=per_row, minlength=len(PARTS))
        times[PARTS.index("other")] += self.steps * spec.step_us * 1e-3
        return {part: float(time) for part, time in zip(PARTS, times)}


def phase_work(
    config: ModelConfig, stack: StackSpec, tokens: int, past: np.ndarray, batch: int
) -> PhaseWork:
    """The work of `len(past)` forward passes of `tokens` tokens each (see `phase_kernels`)."""
    steps = len(past)
    parts, moved, flops, launches = [], [], [], []
    for kernel in phase_kernels(config, stack, tokens, past, batch):
        parts.append(np.full(steps, PARTS.index(kernel.part)))
        moved.append(np.broadcast_to(np.asarray(kernel.bytes, dtype=float), (steps,)))
        flops.append(np.broadcast_to(np.asarray(kernel.flops, dtype=float), (steps,)))
        repeat = config.layers if kernel.per_layer else 1
        launches.append(np.full(steps, kernel.launches * repeat))
    return PhaseWork(
        np.concatenate(parts), np.concatenate(moved), np.concatenate(flops),
        np.concatenate(launches).astype(float), steps,
    )


def weight_bytes(config: ModelConfig) -> int:
    """FP16 bytes of every parameter, as Hugging Face's implementation allocates them."""
    h, e, f = config.hidden, config.embed_dim, config.ffn
    norm = h * (2 if config.norm == "layer_norm" else 1)
    attention = h * (config.q_width + 2 * config.kv_width) + config.q_width * h
    ffn = (3 if config.gated_ffn else 2) * h * f
    biases = config.q_width + 2 * config.kv_width + h + f + h if config.bias else 0
    params = config.layers * (attention + ffn + biases + 2 * norm)
    params += config.vocab_size * e * (1 if config.tied_lm_head else 2)
    if config.learned_positions:
        params += (config.max_positions + config.position_offset) * h
    if e != h:
        params += 2 * e * h
    if config.final_norm:
        params += norm
    return params * BYTES_FP16


def kv_bytes_per_token(config: ModelConfig) -> int:
    """FP16 bytes of K and V that one token adds to the cache, all layers."""
    return 2 * config.kv_width * config.layers * BYTES_FP16


@dataclass(frozen=True)
class GpuEstimate:
    """A GPU baseline's estimate of one request: a prefill of `prompt` tokens, then
    `generate` decode steps, each producing one token per sequence.

    `decode_ms_per_token` is the mean over the decode steps (each with its own context
    length); `tokens_per_s` is `batch * generate` over `total_ms`. The breakdowns give
    milliseconds per part (`PARTS`) summed over the phase; `breakdown` is their sum.
    """

    baseline: str
    model: str
    prompt: int
    generate: int
    batch: int
    prefill_ms: float
    decode_ms_per_token: float
    total_ms: float
    tokens_per_s: float
    prefill_breakdown: dict[str, float]
    decode_breakdown: dict[str, float]
    weight_bytes: int
    kv_cache_bytes: int
    memory_bytes: int
    breakdown: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        total = {part: self.prefill_breakdown[part] + self.decode_breakdown[part] for part in PARTS}
        object.__setattr__(self, "breakdown", total)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class GpuBaseline:
    """A GPU baseline by preset name (`a100`, `a100-eager`, see `baseline_names()`), by the
    path of a TOML file (which may `extends` a preset), or from a `GpuSpec`. Tensor
    parallelism is not modelled: the model, its KV cache and the work run on one GPU."""

    def __init__(self, baseline: str | Path | GpuSpec = "a100"):
        if isinstance(baseline, GpuSpec):
            self.spec = baseline
        else:
            from hpim_ir.baselines.presets import load_baseline

            self.spec = load_baseline(baseline)

    @property
    def name(self) -> str:
        return self.spec.name

    def check_memory(self, config: ModelConfig, tokens: int, batch: int = 1) -> tuple[int, int]:
        """(weight bytes, KV cache bytes) of `batch` sequences of `tokens` tokens; an
        `HpimError` naming the bytes if they do not fit the GPU's memory."""
        weights = weight_bytes(config)
        cache = kv_bytes_per_token(config) * tokens * batch
        if weights + cache > self.spec.memory_bytes:
            raise HpimError(
                f"{config.name} does not fit one {self.spec.part} ({self.name}): FP16 weights "
                f"{weights:,} B + KV cache {cache:,} B ({batch} x {tokens} tokens) = "
                f"{weights + cache:,} B > {self.spec.memory_bytes:,} B "
                f"({self.spec.memory_gib:g} GiB); tensor parallelism is not modelled"
            )
        return weights, cache

    def estimate(
        self, config: ModelConfig | str, prompt: int, generate: int, batch: int = 1
    ) -> GpuEstimate:
        """Prefill of `prompt` tokens, then `generate` decode steps (see `GpuEstimate`)."""
        config = _config(config)
        _check_request(config, prompt, generate, batch)
        weights, cache = self.check_memory(config, prompt + generate, batch)
        stack = self.spec.stack
        prefill = phase_work(config, stack, prompt, np.zeros(1, dtype=np.int64), batch)
        decode = phase_work(config, stack, 1, np.arange(prompt, prompt + generate), batch)
        prefill_parts = prefill.price(self.spec)
        decode_parts = decode.price(self.spec)
        prefill_ms = sum(prefill_parts.values())
        decode_ms = sum(decode_parts.values())
        total_ms = prefill_ms + decode_ms
        return GpuEstimate(
            baseline=self.name,
            model=config.name,
            prompt=prompt,
            generate=generate,
            batch=batch,
            prefill_ms=prefill_ms,
            decode_ms_per_token=decode_ms / generate,
            total_ms=total_ms,
            tokens_per_s=batch * generate / total_ms * 1e3,
            prefill_breakdown=prefill_parts,
            decode_breakdown=decode_parts,
            weight_bytes=weights,
            kv_cache_bytes=cache,
            memory_bytes=self.spec.memory_bytes,
        )

    def decode_step_ms(self, config: ModelConfig | str, context: int, batch: int = 1) -> float:
        """One decode step with `context` tokens already in the KV cache."""
        config = _config(config)
        if context < 0 or context + 1 > config.max_positions:
            raise HpimError(
                f"context {context} is outside 0..{config.max_positions - 1} "
                f"(max_position_embeddings of {config.name})"
            )
        _check_batch(batch)
        self.check_memory(config, context + 1, batch)
        work = phase_work(config, self.spec.stack, 1, np.array([context]), batch)
        return sum(work.price(self.spec).values())


def _config(config: ModelConfig | str) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    from hpim_ir.frontend.config import load_config

    return load_config(config)


def _check_batch(batch: int) -> None:
    if batch < 1:
        raise HpimError(f"batch {batch} must be at least 1")


def _check_request(config: ModelConfig, prompt: int, generate: int, batch: int) -> None:
    check_prompt(config, prompt)
    if generate < 1 or prompt + generate > config.max_positions:
        raise HpimError(
            f"generate {generate} must be at least 1 and prompt + generate = "
            f"{prompt + generate} at most {config.max_positions} "
            f"(max_position_embeddings of {config.name})"
        )
    _check_batch(batch)
