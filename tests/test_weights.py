"""Weights (hpim_ir.weights): Hugging Face folders round-trip exactly, in every accepted
layout and dtype; random weights are seeded and scaled; every bad checkpoint gives one
message naming the tensor (and both shapes)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hpim_ir.errors import HpimError
from hpim_ir.frontend import ModelConfig, build_module, config_from_dict
from hpim_ir.weights import Weights, load_weights, random_weights, save_model, weight_specs

# Tiny models of each structure hpim imports: OPT pre-LN; OPT post-LN with the embedding
# narrower than the model (OPT-350m's project_in/out); LLaMA with grouped-query attention.
TINY_CONFIGS = {
    "opt-pre-ln": {
        "model_type": "opt",
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 64,
        "max_position_embeddings": 32,
        "do_layer_norm_before": True,
    },
    "opt-post-ln": {
        "model_type": "opt",
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 64,
        "max_position_embeddings": 32,
        "do_layer_norm_before": False,
        "word_embed_proj_dim": 16,
    },
    "llama-gqa": {
        "model_type": "llama",
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "max_position_embeddings": 32,
        "rms_norm_eps": 1e-5,
    },
}


def tiny_config(name: str) -> ModelConfig:
    return config_from_dict(TINY_CONFIGS[name], name, name)


# Weight spread of the tiny models: about 1/sqrt(hidden), so that attention is far from uniform
# (with 0.02 at width 32 every query would attend evenly and q_proj would hardly matter).
TINY_STD = 0.2


def tiny_model(folder: Path, name: str, seed: int = 0) -> tuple[Path, Weights]:
    """A tiny model with random weights saved as a Hugging Face folder."""
    weights = random_weights(tiny_config(name), seed, std=TINY_STD)
    return save_model(folder, TINY_CONFIGS[name], weights), weights


def assert_same(a: Weights, b: Weights) -> None:
    assert list(a) == list(b)
    for symbol in a:
        assert a[symbol].dtype == b[symbol].dtype == np.float16
        np.testing.assert_array_equal(a[symbol], b[symbol], err_msg=symbol)


def rewrite_checkpoint(folder: Path, edit) -> None:
    """Replace model.safetensors by `edit(tensors)` (a dict of HF name -> array)."""
    tensors = dict(load_file(folder / "model.safetensors"))
    save_file(edit(tensors), folder / "model.safetensors")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_round_trip_is_exact(tmp_path: Path, name: str, dtype: str) -> None:
    weights = random_weights(tiny_config(name), seed=3)
    save_model(tmp_path, TINY_CONFIGS[name], weights, dtype=dtype)
    assert_same(weights, load_weights(tiny_config(name), tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == TINY_CONFIGS[name]


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_checkpoint_holds_one_tensor_per_layer_by_hf_name(tmp_path: Path, name: str) -> None:
    folder, _ = tiny_model(tmp_path, name)
    names = set(load_file(folder / "model.safetensors"))
    prefix = "model.decoder." if name.startswith("opt") else "model."
    assert f"{prefix}layers.1.self_attn.q_proj.weight" in names
    assert f"{prefix}layers.2.self_attn.q_proj.weight" not in names  # two layers
    # OPT ties its LM head to the embedding (no lm_head.weight); LLaMA's is its own.
    assert ("lm_head.weight" in names) == name.startswith("llama")
    assert ("model.decoder.project_in.weight" in names) == (name == "opt-post-ln")


def test_sharded_checkpoint(tmp_path: Path) -> None:
    folder, weights = tiny_model(tmp_path, "llama-gqa")
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    for shard, members in shards.items():
        save_file({n: tensors[n] for n in members}, folder / shard)
    index = {"metadata": {}, "weight_map": {n: s for s, members in shards.items() for n in members}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model.safetensors").unlink()
    assert_same(weights, load_weights(tiny_config("llama-gqa"), folder))


def write_bf16_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file written by hand from the format's definition (u64 little-endian
    header size, JSON header of dtype / shape / data_offsets, then the data), BF16 being the
    upper 16 bits of an FP32: independent of the safetensors library and of hpim."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        bits = np.ascontiguousarray(value, np.float32).view(np.uint32) >> 16
        data = bits.astype("<u2").tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(value.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs))


def test_bf16_checkpoint_converts_to_fp16(tmp_path: Path) -> None:
    # Values k/1024 with |k| < 256 have at most 8 significant bits: exact in BF16 (8) and in
    # FP16 (11), so the converted weights must equal them bit for bit.
    config = tiny_config("opt-pre-ln")
    random = random_weights(config, seed=5)
    exact = Weights(
        list(random.specs.values()),
        {s: np.clip(np.round(a * 1024.0), -255, 255) / 1024 for s, a in random.items()},
    )
    save_model(tmp_path, TINY_CONFIGS["opt-pre-ln"], exact, dtype="float32")
    checkpoint = tmp_path / "model.safetensors"
    write_bf16_safetensors(checkpoint, load_file(checkpoint))
    assert_same(exact, load_weights(config, tmp_path))


def test_checkpoint_of_a_base_model_without_the_model_prefix(tmp_path: Path) -> None:
    # OPT checkpoints saved from OPTModel name tensors 'decoder.layers...' (no 'model.').
    folder, weights = tiny_model(tmp_path, "opt-post-ln")
    rewrite_checkpoint(folder, lambda t: {n.removeprefix("model."): v for n, v in t.items()})
    assert_same(weights, load_weights(tiny_config("opt-post-ln"), folder))


@pytest.mark.parametrize(
    ("name", "tensor", "shape"),
    [
        ("opt-pre-ln", "model.decoder.layers.1.fc1.weight", "64x32"),
        ("opt-post-ln", "model.decoder.project_out.weight", "16x32"),
        ("llama-gqa", "lm_head.weight", "64x32"),  # untied: the head must be there
        ("llama-gqa", "model.layers.0.self_attn.k_proj.weight", "16x32"),  # 2 KV heads of 8
    ],
)
def test_missing_tensor_is_named(tmp_path: Path, name: str, tensor: str, shape: str) -> None:
    folder, _ = tiny_model(tmp_path, name)
    rewrite_checkpoint(folder, lambda t: {n: v for n, v in t.items() if n != tensor})
    message = rf"tensor '{re.escape(tensor)}' is missing \(@\S+ needs shape {shape}\)"
    with pytest.raises(HpimError, match=message):
        load_weights(tiny_config(name), folder)


def test_misshaped_tensor_names_both_shapes(tmp_path: Path) -> None:
    folder, _ = tiny_model(tmp_path, "llama-gqa")
    tensor = "model.layers.1.mlp.up_proj.weight"  # [intermediate 48, hidden 32]
    rewrite_checkpoint(folder, lambda t: {**t, tensor: np.ascontiguousarray(t[tensor].T)})
    message = rf"tensor '{re.escape(tensor)}' has shape 32x48, but @up_proj needs 48x32"
    with pytest.raises(HpimError, match=message):
        load_weights(tiny_config("llama-gqa"), folder)


def test_value_beyond_fp16_range(tmp_path: Path) -> None:
    folder, _ = tiny_model(tmp_path, "opt-pre-ln")
    tensor = "model.decoder.layers.0.fc2.bias"
    big = np.zeros(32, np.float32)
    big[3] = -1.0e6
    rewrite_checkpoint(folder, lambda t: {**t, tensor: big})
    message = rf"'{re.escape(tensor)}' does not fit FP16: largest magnitude 1e\+06"
    with pytest.raises(HpimError, match=message):
        load_weights(tiny_config("opt-pre-ln"), folder)


def test_unsupported_dtype(tmp_path: Path) -> None:
    folder, _ = tiny_model(tmp_path, "opt-pre-ln")
    tensor = "model.decoder.embed_tokens.weight"
    rewrite_checkpoint(folder, lambda t: {**t, tensor: t[tensor].astype(np.int64)})
    message = rf"'{re.escape(tensor)}' has dtype I64; hpim reads F16, F32, F64 and BF16"
    with pytest.raises(HpimError, match=message):
        load_weights(tiny_config("opt-pre-ln"), folder)


def test_folder_without_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(HpimError, match="no model.safetensors or model.safetensors.index.json"):
        load_weights(tiny_config("opt-pre-ln"), tmp_path)
    with pytest.raises(HpimError, match="not a folder"):
        load_weights(tiny_config("opt-pre-ln"), tmp_path / "absent")
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(HpimError, match="model.safetensors: not a readable safetensors file"):
        load_weights(tiny_config("opt-pre-ln"), tmp_path)


def test_shard_listed_in_index_must_exist(tmp_path: Path) -> None:
    shard = "model-00001-of-00002.safetensors"
    index = {"weight_map": {"model.decoder.embed_tokens.weight": shard}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(HpimError, match="model-00001-of-00002.safetensors: shard listed in"):
        load_weights(tiny_config("opt-pre-ln"), tmp_path)


def test_random_weights_are_seeded_and_scaled() -> None:
    module = build_module(tiny_config("llama-gqa"), "decode", prompt=1)
    a, b, c = (random_weights(module, seed) for seed in (7, 7, 8))
    assert_same(a, b)
    assert not np.array_equal(a["q_proj"], c["q_proj"])
    assert [s.symbol for s in weight_specs(module)] == list(a)
    for symbol, values in a.items():
        assert values.shape == a.specs[symbol].shape
        assert not values.flags.writeable
    # Norm gains sit around 1 (spread 0.1), everything else around 0 (spread 0.02): sample
    # means and deviations over thousands of values are within a few percent of those.
    gains = np.concatenate([a[s].ravel() for s in ("attn_norm", "ffn_norm", "final_norm")])
    gains = gains.astype(np.float64)
    assert abs(gains.mean() - 1) < 0.03 and 0.08 < gains.std() < 0.12
    matrix = a["gate_proj"].astype(np.float64)
    assert abs(matrix.mean()) < 0.001 and 0.019 < matrix.std() < 0.021


def test_save_model_rejects_other_dtypes(tmp_path: Path) -> None:
    with pytest.raises(HpimError, match="save_model writes float16 or float32, not 'bfloat16'"):
        save_model(tmp_path, {}, random_weights(tiny_config("opt-pre-ln"), 0), dtype="bfloat16")
