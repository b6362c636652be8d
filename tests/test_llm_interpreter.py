"""The functional interpreter of the `llm` dialect (hpim_ir.sim.functional) against the
independent reference forward pass (tests/reference_model.py).

Tiny OPT (pre-LN; post-LN with project_in/out) and LLaMA (grouped-query attention) models
with random weights are saved as Hugging Face folders and loaded back; the interpreter runs
a prefill of K tokens and decodes the rest teacher-forced; its logits at every position must
match the reference's: within 2% of the largest logit magnitude with FP16 storage (the
project's target), within 1e-5 with FP32 storage, where only the order of FP32 operations
differs.
"""

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdsl.dialects import test as test_dialect
from xdsl.dialects.builtin import ModuleOp
from xdsl.rewriter import InsertPoint, Rewriter

from hpim_ir.errors import HpimError
from hpim_ir.frontend import ModelConfig, build_module, config_from_dict, load_config
from hpim_ir.sim.functional import KVCache, run_decode, run_prefill
from hpim_ir.weights import Weights, load_weights, random_weights, save_model
from tests.reference_model import load_checkpoint, reference_logits
from tests.test_weights import TINY_CONFIGS, TINY_STD, tiny_config, tiny_model

TOLERANCE = {"fp16": 0.02, "fp32": 1e-5}
TOKENS = [5, 17, 3, 63, 0, 42, 42, 9, 31, 12]


class Model:
    """A tiny model on disk, loaded for the interpreter and for the reference."""

    def __init__(self, folder: Path, config: ModelConfig):
        self.config = config
        self.decode = build_module(config, "decode", prompt=1)
        self.weights = load_weights(self.decode, folder)
        self.checkpoint = load_checkpoint(folder)
        self._prefill: dict[int, ModuleOp] = {}

    def prefill(self, prompt: int) -> ModuleOp:
        if prompt not in self._prefill:
            self._prefill[prompt] = build_module(self.config, "prefill", prompt=prompt)
        return self._prefill[prompt]

    def run(
        self, tokens: list[int], prompt: int, precision: str, weights: Weights | None = None
    ) -> np.ndarray:
        """Logits of every position: prefill `prompt` tokens, decode the rest teacher-forced."""
        weights = self.weights if weights is None else weights
        logits, cache = run_prefill(self.prefill(prompt), weights, tokens[:prompt], precision)
        rows = [logits]
        for token in tokens[prompt:]:
            step, cache = run_decode(self.decode, weights, token, cache, precision)
            rows.append(step)
        return np.concatenate(rows).astype(np.float32)

    def reference(self, tokens: list[int]) -> np.ndarray:
        return reference_logits(*self.checkpoint, tokens)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module", params=list(TINY_CONFIGS))
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Model:
    folder, _ = tiny_model(tmp_path_factory.mktemp(request.param), request.param, seed=11)
    return Model(folder, tiny_config(request.param))


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
@pytest.mark.parametrize("prompt", [1, 4, len(TOKENS)])
def test_logits_match_reference(model: Model, prompt: int, precision: str) -> None:
    got = model.run(TOKENS, prompt, precision)
    expected = model.reference(TOKENS)
    assert got.shape == expected.shape == (len(TOKENS), 64)
    assert relative_error(got, expected) <= TOLERANCE[precision]


def test_logits_depend_on_the_context(model: Model) -> None:
    # The comparison above could not miss a position or causality error: the logits of one
    # token vary with what precedes it by far more than the FP16 tolerance.
    expected = model.reference(TOKENS)
    repeated = expected[5:7]  # token 42 twice
    assert np.abs(repeated[0] - repeated[1]).max() > 5 * TOLERANCE["fp16"] * np.abs(expected).max()


def test_every_weight_matters(model: Model) -> None:
    # Zeroing any one weight moves the logits far beyond the FP32 tolerance: the interpreter
    # cannot ignore or misplace a tensor and still pass. Except k_proj's bias: it adds the same
    # q . b to every score of a query, which softmax cancels (in any correct implementation).
    expected = model.reference(TOKENS)
    for symbol, values in model.weights.items():
        if symbol == "k_proj.bias":
            continue
        specs = list(model.weights.specs.values())
        zeroed = Weights(specs, {**model.weights, symbol: np.zeros_like(values)})
        got = model.run(TOKENS, len(TOKENS), "fp32", zeroed)
        assert relative_error(got, expected) > 100 * TOLERANCE["fp32"], symbol


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_sequences_match_reference(model: Model, data: st.DataObject) -> None:
    positions = model.config.max_positions
    tokens = data.draw(st.lists(st.integers(0, 63), min_size=1, max_size=positions))
    prompt = data.draw(st.integers(1, len(tokens)))
    got = model.run(tokens, prompt, "fp16")
    assert relative_error(got, model.reference(tokens)) <= TOLERANCE["fp16"]


def test_identical_across_runs(model: Model) -> None:
    first = model.run(TOKENS, 3, "fp16")
    np.testing.assert_array_equal(first, model.run(TOKENS, 3, "fp16"))


def test_decode_leaves_the_cache_unchanged(model: Model) -> None:
    _, cache = run_prefill(model.prefill(3), model.weights, TOKENS[:3])
    a, after_a = run_decode(model.decode, model.weights, 7, cache)
    b, _ = run_decode(model.decode, model.weights, 8, cache)
    again, _ = run_decode(model.decode, model.weights, 7, cache)
    assert cache.length == 3 and after_a.length == 4
    assert {rows.shape[0] for rows in cache.rows.values()} == {3}
    assert {rows.shape[0] for rows in after_a.rows.values()} == {4}
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_deep_model_stays_finite_and_matches(tmp_path: Path, name: str) -> None:
    # 24 layers at width 64: FP16 activations stay finite and the FP16 rounding of every
    # layer still keeps the logits within the tolerance.
    config = {**TINY_CONFIGS[name], "num_hidden_layers": 24, "hidden_size": 64}
    deep_config = config_from_dict(config, name, name)
    save_model(tmp_path, config, random_weights(deep_config, seed=2, std=TINY_STD))
    deep = Model(tmp_path, deep_config)
    got = deep.run(TOKENS, 5, "fp16")
    assert np.isfinite(got).all()
    assert relative_error(got, deep.reference(TOKENS)) <= TOLERANCE["fp16"]


@pytest.mark.parametrize("bad", [64, -1])
def test_token_outside_the_vocabulary(model: Model, bad: int) -> None:
    message = rf"token id {bad} is outside the vocabulary 0\.\.63"
    with pytest.raises(HpimError, match=message):
        run_prefill(model.prefill(2), model.weights, [1, bad])
    _, cache = run_prefill(model.prefill(2), model.weights, [1, 2])
    with pytest.raises(HpimError, match=message):
        run_decode(model.decode, model.weights, bad, cache)


def test_context_beyond_max_positions(model: Model) -> None:
    positions = model.config.max_positions
    _, cache = run_prefill(model.prefill(positions), model.weights, list(range(positions)))
    # OPT's position table runs out first; LLaMA (RoPE) runs out of KV cache rows.
    message = (
        rf"the context reaches {positions + 1} tokens, beyond the model's {positions} positions"
        if model.config.learned_positions
        else rf"the context reaches {positions + 1} tokens, beyond the {positions} positions "
        "of @key_cache"
    )
    with pytest.raises(HpimError, match=message):
        run_decode(model.decode, model.weights, 1, cache)


def test_bad_calls(model: Model) -> None:
    with pytest.raises(HpimError, match="the @prefill module takes 4 tokens, got 3"):
        run_prefill(model.prefill(4), model.weights, [1, 2, 3])
    with pytest.raises(HpimError, match="tokens must be a sequence of integer ids"):
        run_prefill(model.prefill(2), model.weights, [1.5, 2.0])
    message = r"the module has no @decode_step function \(import the model with --phase decode\)"
    with pytest.raises(HpimError, match=message):
        run_decode(model.prefill(2), model.weights, 1, KVCache())
    with pytest.raises(HpimError, match=r"the module has no @prefill function"):
        run_prefill(model.decode, model.weights, [1])
    with pytest.raises(HpimError, match="unknown precision 'fp8'; choose from fp16, fp32"):
        run_decode(model.decode, model.weights, 1, KVCache(), precision="fp8")


def test_weights_of_another_model() -> None:
    module = build_module(tiny_config("opt-pre-ln"), "decode", prompt=1)
    narrower = config_from_dict({**TINY_CONFIGS["opt-pre-ln"], "ffn_dim": 40}, "x", "x")
    message = "the weights give @fc1 shape 2x40x32, but the module declares 2x64x32"
    with pytest.raises(HpimError, match=message):
        run_decode(module, random_weights(narrower, seed=0), 1, KVCache())
    message = "the weights have no @embed_positions, which the module declares"
    with pytest.raises(HpimError, match=message):
        run_decode(module, random_weights(tiny_config("llama-gqa"), seed=0), 1, KVCache())


def test_op_without_an_implementation(model: Model) -> None:
    module = build_module(model.config, "decode", prompt=1)
    function = next(op for op in module.body.block.ops if op.name == "func.func")
    Rewriter.insert_op(test_dialect.TestOp(), InsertPoint.at_start(function.body.block))
    with pytest.raises(HpimError, match="cannot interpret @decode_step: .*test.op"):
        run_decode(module, model.weights, 1, KVCache())


@pytest.mark.slow
def test_opt_125m_sized_model_at_default_scales(tmp_path: Path) -> None:
    # Real widths (768, 12 heads, 50272-token vocabulary, 12 layers) with random_weights'
    # default spread 0.02, as for a real checkpoint's magnitudes.
    config = json.loads((resources.files("hpim_ir.frontend") / "zoo" / "opt-125m.json").read_text())
    save_model(tmp_path, config, random_weights(load_config("opt-125m"), seed=0))
    model = Model(tmp_path, load_config("opt-125m"))
    tokens = [2, 100, 2000, 50271, 7, 31414, 8, 9, 10]
    got = model.run(tokens, 6, "fp16")
    assert np.isfinite(got).all()
    assert relative_error(got, model.reference(tokens)) <= TOLERANCE["fp16"]
