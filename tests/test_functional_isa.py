"""The compiled ISA program computes the model (hpim_ir.sim.functional.isa).

Tiny OPT (pre-LN; post-LN with project_in/out) and LLaMA (grouped-query attention) models
with random weights are saved as Hugging Face folders, compiled for every registered policy
with the pipeline on and off, and every token is stepped through the compiled decode step by
the ISA executor. The logits of every position must agree within 2% of the largest logit
magnitude (the issue's target) with the independent reference forward pass
(tests/reference_model.py) and with the `llm` interpreter.

The tiny machine (`TINY_MACHINE`: 2 HBM-PIM channels of 8 banks, 8 columns a row, a 256-byte
global buffer; 4 SRAM-PIM cores) makes the tiny models exercise what real ones do: output
rows beyond the banks (several output groups per bank; K and V GEMVs sent to SRAM-PIM piece
by piece, one group each, when the pipeline is on), a channel remainder (201 rows on two
channels), several input segments with a short last one (201 inputs in segments of 128), and
the three ways heads meet cores: 2 heads on 4 cores (a head split over 2 cores: all-gathered
softmax statistics, reduced outputs), 4 heads (one per core), 8 query heads sharing 2 KV heads
(two heads per core, run in phases). The `hpim` preset (64 channels, 32 cores) runs them too.
With one bank in one channel, a KV cache in HBM is a few stripes long, so the 4 pieces its
context streams in read 0 to 4 stripes each (the later ones none at short contexts).

The executor hands over to the other stream at every token, so a consumer reads a piece as
early as the hardware may: a core's load of K/V rows the GEMV has not delivered yet is an
error (`opt-post-ln` on the tiny machine: a channel computes two heads, whose rows arrive in
its last pieces).

The compiled prefill (`PREFILL_MACHINE`: the tiny machine with less activation memory) runs a
40-token prompt in two chunks, with every token's logits (`all_logits`), and the decode step
goes on from the KV cache it wrote in HBM (every policy; `hbm-only`'s prefill, on HBM-PIM,
as decode steps).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr
from xdsl.printer import Printer

from hpim_ir.errors import HpimError
from hpim_ir.frontend import build_module, config_from_dict, load_config
from hpim_ir.hardware import load_hardware
from hpim_ir.passes.convert_llm_to_pim import POLICIES
from hpim_ir.passes.convert_pim_to_isa import ConvertPimToIsaPass
from hpim_ir.passes.hpim_lower import HpimLowerPass
from hpim_ir.passes.lower_sram_linear import PrefillOnHbm
from hpim_ir.sim.functional import KVCache, run_decode, run_prefill
from hpim_ir.sim.functional.isa import IsaMachine, run_tokens
from hpim_ir.sim.program import MachineProgram, parse_program
from hpim_ir.sim.scheduler import simulate_machine
from hpim_ir.weights import load_weights, random_weights, save_model
from tests.reference_model import load_checkpoint, reference_logits

TOLERANCE = 0.02
TOKENS = [5, 17, 3, 63, 0, 42, 42, 9, 127, 12]
PROMPT = 4  # the llm interpreter's prefill length (the ISA program steps every token)

CONFIGS = {
    "opt-pre-ln": {
        "model_type": "opt",
        "vocab_size": 128,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "ffn_dim": 201,
        "max_position_embeddings": 32,
        "do_layer_norm_before": True,
    },
    "opt-post-ln": {
        "model_type": "opt",
        "vocab_size": 128,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 96,
        "max_position_embeddings": 32,
        "do_layer_norm_before": False,
        "word_embed_proj_dim": 32,
    },
    "llama-gqa": {
        "model_type": "llama",
        "vocab_size": 128,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "intermediate_size": 150,
        "max_position_embeddings": 32,
        "rms_norm_eps": 1e-5,
    },
}

TINY_MACHINE = """\
extends = "hpim"
description = "a tiny HPIM for functional tests"
[hbm]
stacks = 1
channels = 2
columns = 8
bank_groups = 2
banks_per_group = 2
global_buffer_bytes = 256
[sram]
cores = 4
[sram.noc]
mesh_cols = 2
"""

# Combinations the compiler cannot lower today (not the executor's doing): the check runs
# and must fail, so a fix shows up here.
KNOWN_COMPILER_FAILURES: dict[tuple[str, str], str] = {}


# Programs the executor rejects because the compiler is wrong, not the executor (model, hw,
# kv -> the executor's message). The check runs and must fail, so a fix shows up here.
KNOWN_PIPELINE_BUGS: dict[tuple[str, str, str], str] = {}


def machine_file(factory: pytest.TempPathFactory, name: str, text: str) -> str:
    """A hardware file holding `text` (a module fixture's machine)."""
    path = factory.mktemp("hw") / f"{name}.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def tiny_machine(tmp_path_factory: pytest.TempPathFactory) -> str:
    return machine_file(tmp_path_factory, "tiny", TINY_MACHINE)


class Model:
    """A tiny model on disk, its weights, and the two independent sets of logits."""

    def __init__(self, folder: Path, name: str):
        self.name = name
        self.config = config_from_dict(CONFIGS[name], name, name)
        self.weights = load_weights(self.config, folder)
        self.reference = reference_logits(*load_checkpoint(folder), TOKENS).astype(np.float32)
        decode = build_module(self.config, "decode", prompt=1)
        prefill = build_module(self.config, "prefill", prompt=PROMPT)
        logits, cache = run_prefill(prefill, self.weights, TOKENS[:PROMPT])
        rows = [logits]
        for token in TOKENS[PROMPT:]:
            step, cache = run_decode(decode, self.weights, token, cache)
            rows.append(step)
        self.interpreted = np.concatenate(rows).astype(np.float32)

    def compile(
        self, hw: str, policy: str = "hpim", pipeline: bool = True, kv: str | None = None
    ) -> ModuleOp:
        module = build_module(self.config, "decode", prompt=1)
        HpimLowerPass(hw=hw, policy=policy, pipeline=pipeline, kv_cache=kv).apply(Context(), module)
        return module

    def run(self, module: ModuleOp, hw: str) -> np.ndarray:
        return run_tokens(module, self.weights, TOKENS, load_hardware(hw)).astype(np.float32)


@pytest.fixture(scope="module", params=list(CONFIGS))
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Model:
    folder = tmp_path_factory.mktemp(request.param)
    config = config_from_dict(CONFIGS[request.param], request.param, request.param)
    save_model(folder, CONFIGS[request.param], random_weights(config, seed=11, std=0.2))
    return Model(folder, request.param)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def assert_computes_the_model(model: Model, got: np.ndarray) -> None:
    assert got.shape == model.reference.shape == (len(TOKENS), 128)
    assert relative_error(got, model.reference) <= TOLERANCE
    assert relative_error(got, model.interpreted) <= TOLERANCE


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "no-pipeline"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_policy_computes_the_model(
    model: Model, tiny_machine: str, policy: str, pipeline: bool
) -> None:
    if (model.name, policy) in KNOWN_COMPILER_FAILURES:
        with pytest.raises(KeyError):
            model.compile(tiny_machine, policy, pipeline)
        pytest.xfail(KNOWN_COMPILER_FAILURES[(model.name, policy)])
    try:
        module = model.compile(tiny_machine, policy, pipeline)
    except HpimError as error:
        if "not supported" in str(error):
            pytest.skip(f"the compiler does not lower {policy!r} yet: {error}")
        raise
    assert_computes_the_model(model, model.run(module, tiny_machine))


@pytest.mark.parametrize("kv", ["sram", "hbm"])
@pytest.mark.parametrize("hw", ["tiny", "hpim"])
def test_kv_cache_resident_or_streamed(model: Model, tiny_machine: str, hw: str, kv: str) -> None:
    # The cache resident in the macros (mvm) or kept in HBM and streamed in pieces
    # (stream_mvm), on the tiny machine and on the paper's (every head split over cores).
    machine = tiny_machine if hw == "tiny" else hw
    module = model.compile(machine, kv=kv)
    if (model.name, hw, kv) in KNOWN_PIPELINE_BUGS:
        with pytest.raises(HpimError, match=KNOWN_PIPELINE_BUGS[(model.name, hw, kv)]):
            model.run(module, machine)
        pytest.xfail("the pipelined K/V pieces do not hold what a core loads")
    assert_computes_the_model(model, model.run(module, machine))


def test_context_streamed_in_pieces_of_few_stripes(
    model: Model, tiny_machine: str, tmp_path: Path
) -> None:
    # One bank in one channel: a context stripe (8 columns of 32 B) holds 2 tokens of K (64
    # values of 2 B), so over the 10 tokens the whole context is 0 to 5 stripes and the 4
    # pieces read 1, 2, 3 or 4 of them. Where later pieces read none, the last piece that
    # reads one brings their keys; the executor checks every key against its tokens.
    narrow = tmp_path / "narrow.toml"
    narrow.write_text(
        f'extends = "{tiny_machine}"\n[hbm]\nchannels = 1\npseudo_channels = 1\nranks = 1\n'
        "bank_groups = 1\nbanks_per_group = 1\n"
    )
    module = model.compile(str(narrow), kv="hbm")
    assert_computes_the_model(model, model.run(module, str(narrow)))


def test_identical_across_runs(model: Model, tiny_machine: str) -> None:
    module = model.compile(tiny_machine)
    np.testing.assert_array_equal(model.run(module, tiny_machine), model.run(module, tiny_machine))


def test_bank_partial_sums_in_the_stated_precision(model: Model, tiny_machine: str, tmp_path) -> None:
    # The same program on a machine whose PUs keep FP16 partial sums: still the model (rows of
    # a few hundred products lose a few FP16 ulps), but not the FP32-accumulator values.
    fp16 = tmp_path / "fp16.toml"
    fp16.write_text(f'extends = "{tiny_machine}"\n[hbm]\npu_accumulate = "fp16"\n')
    module = model.compile(tiny_machine)
    wide, narrow = model.run(module, tiny_machine), model.run(module, str(fp16))
    assert_computes_the_model(model, narrow)
    assert not np.array_equal(wide, narrow)


def _instructions(module: ModuleOp, name: str) -> list:
    return [op for op in module.walk() if op.name == name and "data" in op.attributes]


def _set(op, **entries) -> None:
    data = dict(op.attributes["data"].data)
    for key, value in entries.items():
        data[key] = StringAttr(value) if isinstance(value, str) else IntegerAttr(value, 64)
    op.attributes["data"] = DictionaryAttr(data)


def test_a_wrong_weight_breaks_agreement(model: Model, tiny_machine: str) -> None:
    # The output projection's first gemv reading q_proj's rows (the same shape) instead.
    module = model.compile(tiny_machine)
    gemv = next(
        g
        for g in _instructions(module, "hbm_isa.gemv")
        if g.attributes["data"].data["w"].data == "o_proj"
    )
    _set(gemv, w="q_proj")
    assert relative_error(model.run(module, tiny_machine), model.reference) > 5 * TOLERANCE


def test_a_wrong_tile_offset_is_caught(model: Model, tiny_machine: str) -> None:
    # The first GEMV's output rows one too far on: its row 0 is never produced, and the
    # load that needs it says so.
    module = model.compile(tiny_machine)
    first = next(
        g for g in _instructions(module, "hbm_isa.gemv") if "w" in g.attributes["data"].data
    )
    _set(first, out=first.attributes["data"].data["out"].value.data + 1)
    with pytest.raises(HpimError, match="before it was produced"):
        model.run(module, tiny_machine)


def test_a_missing_wait_is_caught(model: Model, tiny_machine: str) -> None:
    # Without the wait before the first load of the layer, SRAM-PIM would read the query
    # before HBM-PIM delivered it: an error, never a stale value.
    module = model.compile(tiny_machine)
    layers = next(
        op
        for op in module.ops
        if op.name == "sram_isa.stream" and op.properties["section"].data == "layers"
    )
    waits = [op for op in layers.body.block.ops if op.name == "sram_isa.wait"]
    waits[0].detach()
    waits[0].erase()
    with pytest.raises(HpimError, match="before it was produced"):
        model.run(module, tiny_machine)


def test_data_attributes_round_trip_and_leave_timing_alone(model: Model, tiny_machine: str) -> None:
    module = model.compile(tiny_machine)
    text = io.StringIO()
    Printer(stream=text).print_op(module)
    parsed = parse_program(text.getvalue())
    hw = load_hardware(tiny_machine)
    with_data = simulate_machine(parsed, hw, ctx=16).ns
    for op in module.walk():
        op.attributes.pop("data", None)
    assert simulate_machine(MachineProgram.from_module(module), hw, ctx=16).ns == with_data


def test_bad_inputs(model: Model, tiny_machine: str) -> None:
    module = model.compile(tiny_machine)
    machine = IsaMachine(module, model.weights, load_hardware(tiny_machine))
    with pytest.raises(HpimError, match=r"token id 128 is outside the vocabulary \(0\.\.127\)"):
        machine.step(128)
    for token in range(model.config.max_positions):
        machine.step(token % 128)
    with pytest.raises(HpimError, match="position 32 is beyond the model's 32 positions"):
        machine.step(1)
    plain = build_module(model.config, "decode", prompt=1)
    with pytest.raises(HpimError, match="needs a program compiled by convert-pim-to-isa"):
        IsaMachine(plain, model.weights)


@st.composite
def _shapes(draw: st.DrawFn) -> dict:
    """A random OPT or LLaMA shape (heads of 8 to 32 values, any FFN width)."""
    heads = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    config = {
        "vocab_size": draw(st.integers(40, 140)),
        "hidden_size": heads * draw(st.sampled_from([8, 16, 32])),
        "num_hidden_layers": draw(st.integers(1, 2)),
        "num_attention_heads": heads,
        "max_position_embeddings": 16,
    }
    if draw(st.booleans()):
        return {
            **config,
            "model_type": "opt",
            "ffn_dim": draw(st.integers(8, 300)),
            "do_layer_norm_before": draw(st.booleans()),
        }
    kv_heads = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
    return {
        **config,
        "model_type": "llama",
        "num_key_value_heads": kv_heads,
        "intermediate_size": draw(st.integers(8, 300)),
        "rms_norm_eps": 1e-5,
    }


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=_shapes(),
    policy=st.sampled_from(list(POLICIES)),
    kv=st.sampled_from(["hbm", "sram"]),
    pipeline=st.booleans(),
    data=st.data(),
)
def test_random_shapes_compute_the_model(
    tiny_machine: str, shape: dict, policy: str, kv: str, pipeline: bool, data: st.DataObject
) -> None:
    # Any shape, policy and cache placement: the compiled program's logits agree with the
    # llm interpreter's. Outside what a policy does not lower or contradicts (attention in
    # HBM-PIM beside a cache in SRAM-PIM).
    config = config_from_dict(shape, "random", "random")
    module = build_module(config, "decode", prompt=1)
    weights = random_weights(module, seed=1, std=0.2)
    try:
        HpimLowerPass(hw=tiny_machine, policy=policy, pipeline=pipeline, kv_cache=kv).apply(
            Context(), module
        )
    except HpimError as error:
        assume("not supported" not in str(error) and "contradicts it" not in str(error))
        raise
    tokens = data.draw(st.lists(st.integers(0, shape["vocab_size"] - 1), min_size=1, max_size=5))
    got = run_tokens(module, weights, tokens, load_hardware(tiny_machine)).astype(np.float32)
    assert relative_error(got, interpreted(config, weights, tokens)) <= TOLERANCE


def interpreted(config, weights, tokens: list[int]) -> np.ndarray:
    """The `llm` interpreter's logits of `tokens`, one decode step each."""
    decode, cache, rows = build_module(config, "decode", prompt=1), KVCache(), []
    for token in tokens:
        logits, cache = run_decode(decode, weights, token, cache)
        rows.append(logits)
    return np.concatenate(rows).astype(np.float32)


def test_a_core_whose_query_heads_straddle_two_groups(tiny_machine: str) -> None:
    # Found by the property above: 6 query heads in 2 groups of 3 on the tiny machine's 4
    # cores run 2 a core on 3 cores; core 1's heads 2 and 3 read key/value heads 0 and 1,
    # so its macros must hold both (`attention_tile`), and the last core's second
    # key/value head is padding.
    shape = {
        "model_type": "llama", "vocab_size": 40, "hidden_size": 48, "num_hidden_layers": 1,
        "num_attention_heads": 6, "num_key_value_heads": 2, "intermediate_size": 8,
        "max_position_embeddings": 16, "rms_norm_eps": 1e-5,
    }
    config = config_from_dict(shape, "straddle", "straddle")
    module = build_module(config, "decode", prompt=1)
    weights = random_weights(module, seed=1, std=0.2)
    HpimLowerPass(hw=tiny_machine, pipeline=False, kv_cache="sram").apply(Context(), module)
    tokens = [0, 7, 39]
    got = run_tokens(module, weights, tokens, load_hardware(tiny_machine)).astype(np.float32)
    assert relative_error(got, interpreted(config, weights, tokens)) <= TOLERANCE


@pytest.mark.slow
def test_opt_125m_on_the_paper_machine() -> None:
    # Full size on `hpim`: q_proj's 768 rows as 13 and 12 per channel, two input segments
    # (768 inputs, 512 a segment), an LM head of 50272 rows in 13 output groups per bank,
    # 12 heads each split over 2 cores; the KV cache in HBM, streamed in 4 pieces.
    config = load_config("opt-125m")
    module = build_module(config, "decode", prompt=1)
    weights = random_weights(module, seed=0)
    HpimLowerPass().apply(Context(), module)
    tokens = [2, 100, 2000, 7]
    got = run_tokens(module, weights, tokens).astype(np.float32)
    assert relative_error(got, interpreted(config, weights, tokens)) <= TOLERANCE


# --- the compiled prefill ---------------------------------------------------------------------

# The tiny machine with 28 KiB of activation memory per core: a 40-token prompt runs in two
# chunks of 20 (the second reads the first's K/V back from HBM and rescales its running
# attention output, flash-attention style), and every policy's decode step still fits.
PREFILL_MACHINE = TINY_MACHINE.replace(
    "cores = 4\n", "cores = 4\nactivation_memory_bytes = 28672\n"
)
LONG_PROMPT = 40
LONG_TOKENS = [(7 * i + 3) % 128 for i in range(LONG_PROMPT)] + [5, 17, 3]


@pytest.fixture(scope="module")
def prefill_machine(tmp_path_factory: pytest.TempPathFactory) -> str:
    return machine_file(tmp_path_factory, "prefill", PREFILL_MACHINE)


@dataclass
class LongModel:
    """A tiny model with 64 positions on disk, its weights, and the reference logits of
    `LONG_TOKENS`."""

    config: object
    folder: Path
    weights: object
    reference: np.ndarray


@pytest.fixture(scope="module", params=["opt-pre-ln", "llama-gqa"])
def long_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LongModel:
    folder = tmp_path_factory.mktemp(f"long-{request.param}")
    entries = {**CONFIGS[request.param], "max_position_embeddings": 64}
    config = config_from_dict(entries, request.param, request.param)
    save_model(folder, entries, random_weights(config, seed=11, std=0.2))
    reference = reference_logits(*load_checkpoint(folder), LONG_TOKENS).astype(np.float32)
    return LongModel(config, folder, load_weights(config, folder), reference)


def compile_prefill(
    model: LongModel, hw: str, policy: str = "hpim", all_logits: bool = True
) -> ModuleOp:
    module = build_module(model.config, "prefill", prompt=LONG_PROMPT)
    stages = HpimLowerPass(hw=hw, policy=policy, kv_cache="hbm").stages("prefill")
    stages[-1] = ConvertPimToIsaPass(hw=hw, all_logits=all_logits)
    for stage in stages:
        stage.apply(Context(), module)
    return module


def compile_decode(
    model: LongModel, hw: str, policy: str = "hpim", pipeline: bool = True
) -> ModuleOp:
    module = build_module(model.config, "decode", prompt=1)
    HpimLowerPass(hw=hw, policy=policy, pipeline=pipeline, kv_cache="hbm").apply(Context(), module)
    return module


def prefill_then_decode(
    model: LongModel, prefill: ModuleOp | None, decode: ModuleOp, hw: str
) -> np.ndarray:
    """Every position's logits: the prompt through the compiled prefill (or, without one,
    through the decode step), the rest teacher-forced through the decode step."""
    machine = IsaMachine(decode, model.weights, load_hardware(hw))
    if prefill is None:
        rows = [machine.step(t) for t in LONG_TOKENS[:LONG_PROMPT]]
    else:
        first = IsaMachine(prefill, model.weights, load_hardware(hw))
        rows = list(first.prefill(LONG_TOKENS[:LONG_PROMPT]))
        machine.continue_from(first)
    rows += [machine.step(t) for t in LONG_TOKENS[LONG_PROMPT:]]
    return np.stack(rows).astype(np.float32)


def _sections(module: ModuleOp) -> set[str]:
    return {op.properties["section"].data for op in module.ops if "section" in op.properties}


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "no-pipeline"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_the_compiled_prefill_computes_the_model(
    long_model: LongModel, prefill_machine: str, policy: str, pipeline: bool
) -> None:
    try:
        prefill = compile_prefill(long_model, prefill_machine, policy)
    except PrefillOnHbm:  # GEMMs on HBM-PIM: its prefill runs as decode steps (hpim run)
        prefill = None
    else:
        assert {"layers.0", "layers.1", "epilogue.1"} <= _sections(prefill)  # two chunks
    decode = compile_decode(long_model, prefill_machine, policy, pipeline)
    got = prefill_then_decode(long_model, prefill, decode, prefill_machine)
    assert got.shape == long_model.reference.shape == (len(LONG_TOKENS), 128)
    assert relative_error(got, long_model.reference) <= TOLERANCE


# Machines whose activation memory cannot hold a prompt's FFN intermediate whole: with 8 x 8
# TCUs the intermediate has several column blocks per core, and over a 4 GB/s link a chunk
# must hold 2 x 256 GMAC/s / 4 GB/s = 128 tokens before its GEMMs outlast its weight stream
# (`compute_bound_tokens`), so the prefill takes larger chunks with the intermediate in
# blocks (`lower_blocked_ffn`: each block's up/gate columns, the activation, then down's
# rows accumulated onto the earlier blocks' sums).
BLOCKED_FFN_MEMORY = {"opt-pre-ln": 10240, "llama-gqa": 5120}


def test_a_prefill_with_its_ffn_in_blocks_computes_the_model(
    long_model: LongModel, tmp_path: Path
) -> None:
    memory = BLOCKED_FFN_MEMORY[long_model.config.name]
    hw = tmp_path / "small.toml"
    small = PREFILL_MACHINE.replace("= 28672\n", f"= {memory}\n")
    hw.write_text(small + "[sram.tcu]\nrows = 8\ncols = 8\n[link]\nbandwidth_gbs = 4\n")
    prefill = compile_prefill(long_model, str(hw))
    bases = {
        op.attributes["data"].data["base"].value.data
        for op in _instructions(prefill, "hbm_isa.read") if "base" in op.attributes["data"].data
    }
    assert len(bases) > 1  # the intermediate's blocks
    machine = IsaMachine(prefill, long_model.weights, load_hardware(str(hw)))
    got = np.stack(list(machine.prefill(LONG_TOKENS[:LONG_PROMPT]))).astype(np.float32)
    assert relative_error(got, long_model.reference[:LONG_PROMPT]) <= TOLERANCE


def test_the_timing_prefill_computes_the_last_token(
    long_model: LongModel, prefill_machine: str
) -> None:
    # Without all-logits the program computes the LM head for the last token only.
    prefill = compile_prefill(long_model, prefill_machine, all_logits=False)
    assert "epilogue" in _sections(prefill)
    machine = IsaMachine(prefill, long_model.weights, load_hardware(prefill_machine))
    got = machine.prefill(LONG_TOKENS[:LONG_PROMPT]).astype(np.float32)
    assert got.shape == (1, 128)
    expected = long_model.reference[LONG_PROMPT - 1 : LONG_PROMPT]
    assert relative_error(got, expected) <= TOLERANCE


def test_a_corrupted_prefill_annotation_breaks_agreement(
    long_model: LongModel, prefill_machine: str
) -> None:
    # The second chunk's softmax over its own keys starts afresh instead of going on from
    # the earlier keys' running max and sum: the output of the earlier block is dropped.
    prefill = compile_prefill(long_model, prefill_machine)
    continued = [
        op for op in _instructions(prefill, "sram_isa.vcu")
        if op.attributes["data"].data.get("online") == IntegerAttr(1, 64)
    ]
    assert continued
    for softmax in continued:
        _set(softmax, online=0)
    decode = compile_decode(long_model, prefill_machine)
    got = prefill_then_decode(long_model, prefill, decode, prefill_machine)
    assert relative_error(got, long_model.reference) > 5 * TOLERANCE


def test_a_read_of_unwritten_cache_positions_is_caught(
    long_model: LongModel, prefill_machine: str
) -> None:
    # The second chunk reads the earlier keys one position on: past what the first wrote.
    prefill = compile_prefill(long_model, prefill_machine)
    reads = [
        op for op in _instructions(prefill, "hbm_isa.read") if "keys" in op.attributes["data"].data
    ]
    assert reads
    for read in reads:
        _set(read, first=1)
    machine = IsaMachine(prefill, long_model.weights, load_hardware(prefill_machine))
    with pytest.raises(HpimError, match="reads positions of @key_cache never written"):
        machine.prefill(LONG_TOKENS[:LONG_PROMPT])


def test_a_prefill_gemm_before_its_weight_tile_is_caught(
    long_model: LongModel, prefill_machine: str
) -> None:
    # Without its wait, the first tile's load could run before HBM-PIM has read the tile.
    prefill = compile_prefill(long_model, prefill_machine)
    wait = next(op for op in prefill.walk() if op.name == "sram_isa.wait")
    wait.detach()
    wait.erase()
    machine = IsaMachine(prefill, long_model.weights, load_hardware(prefill_machine))
    with pytest.raises(HpimError, match="reads element 0 of .* before it was produced"):
        machine.prefill(LONG_TOKENS[:LONG_PROMPT])


@settings(max_examples=6, deadline=None)
@given(prompt=st.integers(2, 60), data=st.data())
def test_any_prompt_length_computes_the_model(
    long_model: LongModel, prefill_machine: str, prompt: int, data: st.DataObject
) -> None:
    # Chunks of any size (an uneven last one, one chunk, several), against the llm
    # interpreter's prefill of the same prompt.
    tokens = data.draw(st.lists(st.integers(0, 127), min_size=prompt, max_size=prompt))
    module = build_module(long_model.config, "prefill", prompt=prompt)
    stages = HpimLowerPass(hw=prefill_machine, kv_cache="hbm").stages("prefill")
    stages[-1] = ConvertPimToIsaPass(hw=prefill_machine, all_logits=True)
    for stage in stages:
        stage.apply(Context(), module)
    machine = IsaMachine(module, long_model.weights, load_hardware(prefill_machine))
    got = machine.prefill(tokens).astype(np.float32)
    expected, _ = run_prefill(
        build_module(long_model.config, "prefill", prompt=prompt), long_model.weights, tokens
    )
    assert relative_error(got, np.asarray(expected, np.float32)) <= TOLERANCE
