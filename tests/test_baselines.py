"""The GPU baselines: hand-derived arithmetic on a tiny model, agreement with the IR's own
statistics, the regimes (decode bandwidth-bound and growing with the context, long prefills
compute-bound), the memory check, the preset files' validation, and the calibration (the
presets hold what the fit returns, and every source is reproduced within the documented
error)."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpim_ir import import_model
from hpim_ir.baselines import GpuBaseline, GpuSpec, StackSpec, baseline_names, load_baseline
from hpim_ir.baselines.calibration import calibrated_parameters, fit, load_sources
from hpim_ir.baselines.gpu import PARTS, kv_bytes_per_token, phase_work, weight_bytes
from hpim_ir.errors import HpimError
from hpim_ir.frontend import config_from_dict, load_config, model_stats, zoo_names

# A tiny OPT: hidden 64 (4 heads of 16), FFN 256, 2 layers, vocabulary 1000, biases, ReLU.
TINY = config_from_dict(
    {
        "model_type": "opt",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "ffn_dim": 256,
        "vocab_size": 1000,
        "max_position_embeddings": 128,
    },
    "tiny",
    "test",
)

FUSED = StackSpec(
    fused_qkv=True,
    fused_gate_up=True,
    attention="fused",
    kv_cache="preallocated",
    prefill_logits="last",
    launches={"layer_norm": 1, "rms_norm": 1, "rotary": 0, "residual": 1, "activation": 1,
              "gate_product": 0, "attention": 0},
)

# Round numbers: 1 GB/s is 1e6 bytes per ms; 1000 TFLOPS puts every kernel of the tiny model
# far below the ridge (1e6 FLOP/byte), so each is memory-bound.
ROUND = GpuSpec(
    name="round",
    description="",
    part="test",
    memory_gib=1,
    bandwidth_gb_s=1,
    fp16_tflops=1000,
    bandwidth_efficiency=1.0,
    compute_efficiency=1.0,
    kernel_us=2.0,
    step_us=10.0,
    stack=FUSED,
)


def test_decode_step_by_hand() -> None:
    # One decode step of TINY with c tokens in the cache, FP16 (2 B), fused stack.
    # Per layer (bytes):
    #   2 norms          2 x 2*64*2                                  =    512
    #   QKV GEMM         2*(64*192 weights + 64 in + 192 out + 192 bias) = 25472
    #   attention        2*(2*64*(c+1) KV read + 2*64 KV write + 2*64 q, out) = 256c + 768
    #   out projection   2*(64*64 + 64 + 64 + 64 bias)               =   8576
    #   residual add     2*64*3                                       =    384
    #   fc1              2*(64*256 + 64 + 256 + 256 bias)            =  33920
    #   ReLU             2*256*2                                      =   1024
    #   fc2              2*(256*64 + 256 + 64 + 64 bias)             =  33536
    #   sum                                                           = 104192 + 256c
    # Per step: token and position embedding 2 x 2*64*2 = 512, final norm 256, LM head
    # 2*(64*1000 + 64 + 1000) = 130128: 130896. Two layers: 339280 + 512c bytes in all,
    # over 1e6 B/ms. Launches: 9 per layer and 4 per step = 22, at 2 us; one step at 10 us.
    context = 10
    expected = (339280 + 512 * context) / 1e6 + 22 * 2e-3 + 10e-3
    assert GpuBaseline(ROUND).decode_step_ms(TINY, context) == pytest.approx(
        expected, rel=1e-12
    )


def test_estimate_by_hand() -> None:
    # Prefill of 3 tokens (no cache), same spec. GEMM bytes grow by the rows' activations:
    #   QKV 2*(12288 + 3*(64+192) + 192) = 26496; out 2*(4096 + 3*128 + 64) = 9088;
    #   fc1 2*(16384 + 3*320 + 256) = 35200; fc2 2*(16384 + 3*320 + 64) = 34816.
    #   Element-wise: norms 2 x 2*3*64*2 = 1536, residual 2*3*64*3 = 1152, ReLU 2*3*256*2 = 3072.
    #   Attention: 2*(2*64*3 KV read + 2*64*3 KV write + 2*64*3 q, out) = 2304.
    #   Per layer 113664; two layers 227328.
    # Per pass: embeddings 2 x 2*3*64*2 = 1536, final norm 768, LM head on the last token
    # only 130128: 132432. Prefill: 359760 B, 22 launches, one pass.
    prefill = 359760 / 1e6 + 22 * 2e-3 + 10e-3
    # Then 2 decode steps with 3 and 4 tokens in the cache (test_decode_step_by_hand).
    decode = [(339280 + 512 * c) / 1e6 + 22 * 2e-3 + 10e-3 for c in (3, 4)]
    estimate = GpuBaseline(ROUND).estimate(TINY, prompt=3, generate=2)
    assert estimate.prefill_ms == pytest.approx(prefill, rel=1e-12)
    assert estimate.decode_ms_per_token == pytest.approx(sum(decode) / 2, rel=1e-12)
    assert estimate.total_ms == pytest.approx(prefill + sum(decode), rel=1e-12)
    assert estimate.tokens_per_s == pytest.approx(2 / (prefill + sum(decode)) * 1e3, rel=1e-12)
    # The attention part of the decode: 2 layers x (256c + 768) bytes + 1 launch each.
    attention = sum(2 * ((256 * c + 768) / 1e6 + 2e-3) for c in (3, 4))
    assert estimate.decode_breakdown["attention"] == pytest.approx(attention, rel=1e-12)


@pytest.mark.parametrize("name", sorted(zoo_names()))
def test_sizes_agree_with_the_imported_ir(name: str) -> None:
    config = load_config(name)
    stats = model_stats(import_model(name))
    assert weight_bytes(config) == stats.weight_bytes_fp16
    assert kv_bytes_per_token(config) == stats.kv_cache_bytes_per_token


@pytest.mark.parametrize("name", ["opt-125m", "opt-350m", "llama-3-8b"])
@pytest.mark.parametrize("baseline", ["a100", "a100-eager"])
def test_decode_flops_agree_with_the_imported_ir(name: str, baseline: str) -> None:
    # The IR's statistics count the bias adds too (one FLOP per output of a biased linear).
    config = load_config(name)
    stats = model_stats(import_model(name, "decode"))
    biases = config.layers * (config.q_width + 2 * config.kv_width + 2 * config.hidden + config.ffn)
    work = phase_work(config, load_baseline(baseline).stack, 1, np.array([99]), 1)
    assert work.flops @ work.launches == stats.flops_at(100) - (biases if config.bias else 0)


def test_eager_prefill_flops_agree_with_the_imported_ir() -> None:
    # Eager attention computes the full score rectangle and the LM head runs on every prompt
    # token, as the IR's prefill does.
    config = load_config("opt-350m")
    stats = model_stats(import_model("opt-350m", "prefill", prompt=64))
    biases = config.layers * (config.q_width + 2 * config.kv_width + 2 * config.hidden + config.ffn)
    work = phase_work(config, load_baseline("a100-eager").stack, 64, np.zeros(1, dtype=int), 1)
    assert work.flops @ work.launches == stats.flops_at(64) - 64 * biases


@pytest.mark.parametrize("baseline", ["a100", "a100-eager"])
def test_decode_grows_with_the_context(baseline: str) -> None:
    gpu = GpuBaseline(baseline)
    times = [gpu.decode_step_ms("opt-1.3b", context) for context in (0, 256, 1024, 2000)]
    assert times == sorted(times) and times[0] < times[-1]


def test_fused_decode_reads_the_kv_cache_once_per_step() -> None:
    # Fused attention streams K and V of the whole context: each extra context token costs
    # its KV bytes (2 * kv_width * layers * 2 B) over the achieved bandwidth, nothing else.
    gpu = GpuBaseline("a100")
    spec = gpu.spec
    config = load_config("opt-6.7b")
    slope = gpu.decode_step_ms(config, 1100) - gpu.decode_step_ms(config, 100)
    per_token_ms = kv_bytes_per_token(config) / (
        spec.bandwidth_gb_s * 1e6 * spec.bandwidth_efficiency
    )
    assert slope == pytest.approx(1000 * per_token_ms, rel=1e-9)


def test_eager_decode_rewrites_the_kv_cache() -> None:
    # Bytes per context token per layer, FP16, kv = kv_width, H = heads:
    #   fused attention reads K and V once:                          2*2*kv =  4 kv
    #   eager: torch.cat reads old and writes new cache, K and V:  2*2*2*kv =  8 kv
    #          q.K^T reads K and writes a score per head:            2*(kv + H)
    #          s.V reads the scores and V:                           2*(kv + H)
    #          two score passes (mask, scale) read and write:      2*2*2*H =  8 H
    #          FP32 softmax and the cast back, 6 B per score each:   2*6*H  = 12 H
    #   eager total 12 kv + 24 H, so the ratio of the slopes is 3 + 6 / head_dim.
    fused, eager = GpuBaseline("a100"), GpuBaseline("a100-eager")
    assert fused.spec.bandwidth_efficiency == eager.spec.bandwidth_efficiency
    config = load_config("opt-6.7b")
    slopes = [g.decode_step_ms(config, 1100) - g.decode_step_ms(config, 100)
              for g in (fused, eager)]
    assert slopes[1] / slopes[0] == pytest.approx(3 + 6 / config.head_dim, rel=1e-9)


@pytest.mark.parametrize("baseline", ["a100", "a100-eager"])
def test_decode_is_bandwidth_bound_and_long_prefill_compute_bound(baseline: str) -> None:
    spec = load_baseline(baseline)
    config = load_config("opt-6.7b")
    bandwidth = spec.bandwidth_gb_s * 1e6 * spec.bandwidth_efficiency
    compute = spec.fp16_tflops * 1e9 * spec.compute_efficiency

    def gemm_rows(tokens: int, past: int) -> tuple[np.ndarray, np.ndarray]:
        work = phase_work(config, spec.stack, tokens, np.array([past]), 1)
        gemms = work.flops >= 2 * config.hidden * tokens * config.hidden  # the projections
        return work.bytes[gemms] / bandwidth, work.flops[gemms] / compute

    memory, math = gemm_rows(1, 2047)  # decode: GEMVs
    assert (memory > 10 * math).all()
    memory, math = gemm_rows(2048, 0)  # prefill of a long prompt: GEMMs
    assert (math > 2 * memory).all()
    # ...so a long prefill costs about its FLOPs over the achieved throughput: the fused
    # stack within the causal half of attention and the LM head on one token (the IR counts
    # full score rectangles and logits for every token); eager adds its score-matrix traffic.
    estimate = GpuBaseline(baseline).estimate(config, prompt=2000, generate=1)
    flops = model_stats(import_model("opt-6.7b", "prefill", prompt=2000)).flops_at(2000)
    if spec.stack.attention == "fused":
        assert estimate.prefill_ms == pytest.approx(flops / compute, rel=0.05)
    else:
        assert estimate.prefill_ms > flops / compute


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(["opt-125m", "opt-1.3b", "llama-2-7b", "llama-3-8b"]),
    prompt=st.integers(1, 1024),
    generate=st.integers(1, 512),
    batch=st.integers(1, 8),
)
def test_estimate_is_consistent(name: str, prompt: int, generate: int, batch: int) -> None:
    fused, eager = (GpuBaseline(n).estimate(name, prompt, generate, batch)
                    for n in ("a100", "a100-eager"))
    for e in (fused, eager):
        assert e.total_ms == pytest.approx(e.prefill_ms + e.decode_ms_per_token * generate)
        assert sum(e.breakdown.values()) == pytest.approx(e.total_ms)
        assert sum(e.prefill_breakdown.values()) == pytest.approx(e.prefill_ms)
        assert set(e.breakdown) == set(PARTS) and min(e.breakdown.values()) > 0
        assert e.tokens_per_s == pytest.approx(batch * generate / e.total_ms * 1e3)
    assert eager.total_ms > fused.total_ms
    # A batch shares the weight stream: a step of B sequences costs at least one sequence's
    # step and at most B of them.
    gpu = GpuBaseline("a100")
    one, many = (gpu.decode_step_ms(name, prompt, b) for b in (1, batch))
    assert one <= many <= batch * one + 1e-12


def test_memory_check_names_the_bytes(tmp_path: Path) -> None:
    with pytest.raises(HpimError) as error:
        GpuBaseline("a100").estimate("opt-66b", prompt=256, generate=768)
    message = str(error.value)
    weights = weight_bytes(load_config("opt-66b"))
    assert f"FP16 weights {weights:,} B" in message
    assert "85,899,345,920 B (80 GiB)" in message and "tensor parallelism" in message
    # OPT-30B fits the 80 GB part but not the 40 GB one.
    GpuBaseline("a100").estimate("opt-30b", prompt=256, generate=768)
    small = tmp_path / "a100-40gb.toml"
    small.write_text('extends = "a100"\n[gpu]\npart = "A100-SXM4-40GB"\nmemory_gib = 40\n'
                     "bandwidth_gb_s = 1555\n")
    with pytest.raises(HpimError, match=r"does not fit one A100-SXM4-40GB .* > 42,949,672,960 B"):
        GpuBaseline(str(small)).estimate("opt-30b", prompt=256, generate=768)


def test_requests_are_checked() -> None:
    gpu = GpuBaseline("a100")
    with pytest.raises(HpimError, match="prompt length 0 is outside 1..2048"):
        gpu.estimate("opt-125m", 0, 8)
    with pytest.raises(HpimError, match="prompt \\+ generate = 2049 at most 2048"):
        gpu.estimate("opt-125m", 2000, 49)
    with pytest.raises(HpimError, match="batch 0 must be at least 1"):
        gpu.estimate("opt-125m", 8, 8, batch=0)
    with pytest.raises(HpimError, match="context 2048 is outside 0..2047"):
        gpu.decode_step_ms("opt-125m", 2048)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('extends = "a100"\n[efficiency]\nbandwith = 0.5\n',
         "unknown key 'efficiency.bandwith' (did you mean 'efficiency.bandwidth'?)"),
        ('extends = "a100"\n[efficiency]\nbandwidth = 1.5\n',
         "efficiency.bandwidth = 1.5: must be in [0.001, 1]"),
        ('extends = "a100"\n[stack]\nattention = "flash"\n',
         "stack.attention = 'flash': must be one of 'fused', 'unfused'"),
        ('extends = "a100"\n[overhead]\nkernel_us = -1\n',
         "overhead.kernel_us = -1: must be at least 0"),
        ('extends = "a100"\n[stack.launches]\nrotary = 1.5\n',
         "stack.launches.rotary = 1.5: must be a non-negative integer"),
        ('extends = "a100"\ngpu = 3\n', "gpu = 3: must be a table [gpu]"),
        ('extends = "a100"\n[gpu.part]\nx = 1\n', "gpu.part is a table; it must be a single value"),
        ('[gpu]\npart = "x"\n', "key 'gpu.memory_gib' is missing"),
        ('extends = "h100"\n', "extends = 'h100': unknown GPU baseline 'h100'"),
        ('extends = "loop.toml"\n', "makes a cycle"),
        ("[gpu\n", "invalid TOML"),
    ],
)
def test_bad_baseline_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(text)
    with pytest.raises(HpimError, match=re.escape(message)) as error:
        load_baseline(str(path))
    assert str(path) in str(error.value)


def test_a_user_file_extends_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nextends = "a100-eager"\n[overhead]\nkernel_us = 3\n')
    spec = load_baseline(str(path))
    eager = load_baseline("a100-eager")
    assert spec.name == "mine" and spec.kernel_us == 3.0
    assert dataclasses.replace(spec, name=eager.name, description=eager.description,
                               kernel_us=eager.kernel_us) == eager


def test_unknown_baseline() -> None:
    with pytest.raises(HpimError, match="unknown GPU baseline 'b200': not a preset \\(a100, "):
        GpuBaseline("b200")


# The calibration's documented fit errors (docs/baselines.md): the worst relative time error
# over each baseline's sources, and the mean.
DOCUMENTED_ERROR = {"a100": (0.25, 0.08), "a100-eager": (0.40, 0.22)}


@pytest.mark.parametrize("baseline", ["a100", "a100-eager"])
def test_presets_hold_the_fit_and_reproduce_every_source(baseline: str) -> None:
    result = fit(baseline)
    preset = load_baseline(baseline)
    assert result.spec == preset, "refit the preset: python -m hpim_ir.baselines.calibration"
    errors = np.abs(result.errors())
    worst, mean = DOCUMENTED_ERROR[baseline]
    assert errors.max() <= worst and errors.mean() <= mean
    assert len(result.rows) == len(load_sources(baseline)) >= 3


def test_calibration_frees_only_efficiencies_and_overheads() -> None:
    allowed = {"efficiency.bandwidth", "efficiency.compute", "overhead.kernel_us",
               "overhead.step_us"}
    for baseline in baseline_names():
        assert set(calibrated_parameters(baseline)) <= allowed
