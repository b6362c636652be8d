"""The frontend: every zoo model imports, verifies and has its published size; each family's
structure is honoured; bad configs give one message naming the key."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from xdsl.dialects.builtin import ModuleOp

from hpim_ir import import_model
from hpim_ir.dialects import llm
from hpim_ir.errors import HpimError
from hpim_ir.frontend import load_config, model_stats, zoo_names

# Parameter counts as published for the checkpoints (Hugging Face `num_parameters()`, the
# model cards and the OPT / LLaMA papers' tables), independent of hpim's code.
PUBLISHED_PARAMETERS = {
    "opt-125m": 125_239_296,
    "opt-350m": 331_196_416,
    "opt-1.3b": 1_315_758_080,
    "opt-2.7b": 2_651_596_800,
    "opt-6.7b": 6_658_473_984,
    "opt-13b": 12_853_473_280,
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
}


def opt_parameters(vocab: int, hidden: int, ffn: int, layers: int, positions: int = 2048) -> int:
    """OPT's parameter count in closed form (pre-LN, embed width = hidden): embeddings,
    positions (+2 offset rows), per layer 4 biased projections + 2 biased FC + 2 LayerNorms,
    and the final LayerNorm."""
    per_layer = 4 * (hidden * hidden + hidden) + 2 * hidden * ffn + ffn + hidden + 4 * hidden
    return vocab * hidden + (positions + 2) * hidden + layers * per_layer + 2 * hidden


# OPT-30B and -66B: the closed form (checked above against the published smaller models).
PUBLISHED_PARAMETERS["opt-30b"] = opt_parameters(50272, 7168, 28672, 48)
PUBLISHED_PARAMETERS["opt-66b"] = opt_parameters(50272, 9216, 36864, 64)


def test_zoo_is_complete() -> None:
    assert set(zoo_names()) == set(PUBLISHED_PARAMETERS)


def test_closed_form_agrees_with_published_opt() -> None:
    assert opt_parameters(50272, 768, 3072, 12) == PUBLISHED_PARAMETERS["opt-125m"]
    assert opt_parameters(50272, 5120, 20480, 40) == PUBLISHED_PARAMETERS["opt-13b"]


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_zoo_model_imports_with_published_size(name: str) -> None:
    module = import_model(name)
    module.verify()
    assert model_stats(module).parameters == PUBLISHED_PARAMETERS[name]


@pytest.mark.parametrize("name", ["opt-125m", "llama-3-8b"])
def test_prefill_imports(name: str) -> None:
    module = import_model(name, phase="prefill", prompt=32)
    module.verify()
    (function,) = [op for op in module.walk() if op.name == "func.func"]
    assert function.sym_name.data == "prefill"
    scores = next(op for op in module.walk() if isinstance(op, llm.AttentionScoresOp))
    assert scores.causal is not None
    assert scores.result.type.get_shape()[1] == 32


def _ops(module: ModuleOp, kind: type) -> list:
    return [op for op in module.walk() if isinstance(op, kind)]


def test_decode_step_has_one_layer_body_and_symbolic_context() -> None:
    module = import_model("opt-6.7b")
    (layers,) = _ops(module, llm.LayersOp)
    assert layers.count.value.data == 32
    # One body, not 32 copies: exactly the 6 linear layers of one decoder layer inside it.
    inside = [op for op in layers.body.walk() if isinstance(op, llm.LinearOp)]
    assert len(inside) == 6
    for append in _ops(module, llm.KVAppendOp):
        assert append.result.type.get_shape()[0] < 0  # dynamic: the context length


def test_stats_of_llama_gqa() -> None:
    stats = model_stats(import_model("llama-2-70b"))
    # 80 layers x (K + V) x 8 kv heads x 128 x 2 bytes
    assert stats.kv_cache_bytes_per_token == 80 * 2 * 8 * 128 * 2
    # Attention: 2 products x 2 FLOPs x 64 heads x 128 per context token and layer.
    assert stats.flops_per_context_token == 80 * 2 * 2 * 64 * 128
    # Matrix FLOPs: 2 per weight of every linear layer (the LM head included, embeddings not).
    embeddings = 32000 * 8192
    assert stats.flops_fixed == 2 * (stats.parameters - embeddings - 80 * 2 * 8192 - 8192)


def test_opt_tied_head_counts_flops_once_per_use() -> None:
    stats = model_stats(import_model("opt-125m"))
    linear = 12 * (4 * (768 * 768) + 2 * 768 * 3072)
    biases = 12 * (4 * 768 + 3072 + 768)
    head = 50272 * 768
    assert stats.flops_fixed == 2 * (linear + head) + biases


def write_config(tmp_path: Path, **changes: object) -> Path:
    base = json.loads((Path(__file__).parents[1] / "hpim_ir/frontend/zoo/llama-2-7b.json").read_text())
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    folder = tmp_path / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(base))
    return folder


def test_config_folder_and_file(tmp_path: Path) -> None:
    folder = write_config(tmp_path, num_hidden_layers=2)
    assert load_config(folder).layers == 2
    assert load_config(folder / "config.json").name == "my-llama"
    module = import_model(str(folder))
    assert model_stats(module).model == "my-llama"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_size": None}, "key 'hidden_size' is missing"),
        ({"num_hidden_layers": "32"}, "key 'num_hidden_layers' must be an integer, got '32'"),
        ({"num_attention_heads": 0}, "key 'num_attention_heads' must be at least 1, got 0"),
        ({"num_key_value_heads": 5}, "num_attention_heads 32 is not a multiple of num_key_value_heads 5"),
        ({"model_type": "gpt2"}, "unknown model_type 'gpt2'"),
        ({"model_type": None}, "key 'model_type' is missing"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "key 'rope_scaling'"),
        ({"hidden_act": "gelu"}, "key 'hidden_act' is 'gelu'"),
        ({"rms_norm_eps": -1}, "key 'rms_norm_eps' must be a positive number"),
        ({"hidden_size": 4100}, "hidden_size 4100 is not divisible by num_attention_heads 32"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, changes: dict, message: str) -> None:
    folder = write_config(tmp_path, **changes)
    with pytest.raises(HpimError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")) as info:
        load_config(folder)
    assert str(folder) in str(info.value)


def test_not_json_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(HpimError, match="not a readable JSON file"):
        load_config(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HpimError, match="folder has no config.json"):
        load_config(empty)


def test_prompt_must_fit_positions() -> None:
    with pytest.raises(HpimError, match="prompt length 4000 is outside 1..2048"):
        import_model("opt-125m", phase="prefill", prompt=4000)


def run_hpim(*args: str) -> subprocess.CompletedProcess[str]:
    # Run outside the checkout so the installed package, not the source folder, is imported.
    return subprocess.run(
        [sys.executable, "-m", "hpim_ir", *args], capture_output=True, text=True, cwd="/"
    )


def test_cli_stats_json() -> None:
    result = run_hpim("import", "opt-13b", "--stats", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parameters"] == 12_853_473_280
    assert report["weight_bytes_fp16"] == 2 * 12_853_473_280
    assert report["kv_cache_bytes_per_token"] == 40 * 2 * 5120 * 2
    assert report["flops_per_decode_token"] == report["flops_fixed"] + 257 * report["flops_per_context_token"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "opt-7b"], "unknown model 'opt-7b'"),
        (["import", "opt-125m", "--phase", "prefill", "--prompt", "0"], "prompt length 0"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    result = run_hpim(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
