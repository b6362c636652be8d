"""Model configurations: the zoo and Hugging Face `config.json` files, read into `ModelConfig`.

A `ModelConfig` is the architecture-neutral description the IR builder needs. Each supported
`model_type` has a reader that takes the keys Hugging Face's own implementation reads, with the
same defaults, and rejects what hpim cannot honour (an unknown activation, RoPE scaling) rather
than building a different model. Every problem raises `HpimError` naming the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hpim_ir.errors import HpimError


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer, as far as hpim's compiler and simulator need to know it."""

    name: str
    family: str  # "opt" | "llama"
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    max_positions: int
    norm: str  # "layer_norm" | "rms_norm"
    norm_eps: float
    pre_norm: bool  # normalize before attention/FFN (else after the residual add)
    final_norm: bool
    activation: str  # "relu" | "gelu" (plain FFN) or "swiglu" (gated)
    bias: bool  # linear layers carry biases
    learned_positions: bool  # OPT-style table; otherwise RoPE
    position_offset: int
    rope_theta: float
    embed_dim: int  # width of the token embedding (OPT-350m: 512, projected in/out)
    tied_lm_head: bool

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def gated_ffn(self) -> bool:
        return self.activation == "swiglu"


# The range of positive FP32 values (the smallest subnormal to the largest finite).
FP32_TINIEST = 2.0**-149
FP32_MAX = (2 - 2.0**-23) * 2.0**127


class _Keys:
    """Typed access to a config dict; every error names the file and the key."""

    def __init__(self, data: dict[str, Any], source: str):
        self.data = data
        self.source = source

    def _fail(self, key: str, problem: str) -> HpimError:
        return HpimError(f"{self.source}: key '{key}' {problem}")

    def int(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be at least {minimum}, got {value}")
        return value

    def float(self, key: str, default: float | None = None, fp32: bool = False) -> float:
        """A positive finite number; `fp32`: one that stays so in FP32 (the IR keeps it so)."""
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < math.inf
        ):
            raise self._fail(key, f"must be a positive number, got {value!r}")
        if fp32 and not FP32_TINIEST <= value <= FP32_MAX:
            raise self._fail(
                key, f"is {value!r}, which FP32 cannot hold (it is kept as an FP32 attribute)"
            )
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str | None, allowed: dict[str, str]) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if not isinstance(value, str) or value not in allowed:
            raise self._fail(key, f"is {value!r}; hpim supports {', '.join(map(repr, allowed))}")
        return allowed[value]

    def inconsistent(self, message: str) -> HpimError:
        return HpimError(f"{self.source}: {message}")


def _read_opt(name: str, keys: _Keys) -> ModelConfig:
    """OPT (facebook/opt-*), as transformers' `OPTDecoder` builds it."""
    hidden = keys.int("hidden_size")
    heads = keys.int("num_attention_heads")
    if hidden % heads:
        raise keys.inconsistent(
            f"hidden_size {hidden} is not divisible by num_attention_heads {heads}"
        )
    pre_norm = keys.bool("do_layer_norm_before", True)
    if not keys.bool("layer_norm_elementwise_affine", True):
        raise keys.inconsistent(
            "key 'layer_norm_elementwise_affine' is false; hpim supports affine LayerNorm only"
        )
    return ModelConfig(
        name=name,
        family="opt",
        vocab_size=keys.int("vocab_size"),
        hidden=hidden,
        layers=keys.int("num_hidden_layers"),
        heads=heads,
        kv_heads=heads,
        head_dim=hidden // heads,
        ffn=keys.int("ffn_dim"),
        max_positions=keys.int("max_position_embeddings"),
        norm="layer_norm",
        norm_eps=1e-5,  # transformers' OPT uses nn.LayerNorm's default
        pre_norm=pre_norm,
        final_norm=pre_norm and not keys.bool("_remove_final_layer_norm", False),
        activation=keys.choice(
            # llm.gelu is the tanh form, which is transformers' "gelu_new"; its "gelu" is the
            # erf form, which hpim does not model.
            "activation_function", "relu", {"relu": "relu", "gelu_new": "gelu"}
        ),
        bias=keys.bool("enable_bias", True),
        learned_positions=True,
        position_offset=2,  # OPTLearnedPositionalEmbedding's fixed offset
        rope_theta=0.0,
        embed_dim=keys.int("word_embed_proj_dim", hidden),
        tied_lm_head=keys.bool("tie_word_embeddings", True),
    )


def _read_llama(name: str, keys: _Keys) -> ModelConfig:
    """LLaMA 1/2/3 (`LlamaForCausalLM`), as transformers' `LlamaModel` builds it."""
    hidden = keys.int("hidden_size")
    heads = keys.int("num_attention_heads")
    kv_heads = keys.int("num_key_value_heads", heads)
    if heads % kv_heads:
        raise keys.inconsistent(
            f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
        )
    if "head_dim" not in keys.data and hidden % heads:
        raise keys.inconsistent(
            f"hidden_size {hidden} is not divisible by num_attention_heads {heads}"
        )
    head_dim = keys.int("head_dim", hidden // heads)
    if head_dim % 2:
        raise keys.inconsistent(f"head_dim {head_dim} must be even for rotary embeddings")
    if keys.data.get("rope_scaling") is not None:
        raise keys.inconsistent(
            f"key 'rope_scaling' is {keys.data['rope_scaling']!r}; hpim supports plain RoPE only"
        )
    if keys.bool("attention_bias", False) or keys.bool("mlp_bias", False):
        raise keys.inconsistent(
            "keys 'attention_bias'/'mlp_bias' are true; hpim supports bias-free LLaMA only"
        )
    keys.choice("hidden_act", "silu", {"silu": "silu"})
    return ModelConfig(
        name=name,
        family="llama",
        vocab_size=keys.int("vocab_size"),
        hidden=hidden,
        layers=keys.int("num_hidden_layers"),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        ffn=keys.int("intermediate_size"),
        max_positions=keys.int("max_position_embeddings"),
        norm="rms_norm",
        norm_eps=keys.float("rms_norm_eps", 1e-6, fp32=True),
        pre_norm=True,
        final_norm=True,
        activation="swiglu",
        bias=False,
        learned_positions=False,
        position_offset=0,
        rope_theta=keys.float("rope_theta", 10000.0, fp32=True),
        embed_dim=hidden,
        tied_lm_head=keys.bool("tie_word_embeddings", False),
    )


READERS: dict[str, Callable[[str, _Keys], ModelConfig]] = {
    "opt": _read_opt,
    "llama": _read_llama,
}


def zoo_names() -> list[str]:
    """The model names `hpim import` knows without a config file."""
    zoo = resources.files("hpim_ir.frontend") / "zoo"
    return sorted(entry.name.removesuffix(".json") for entry in zoo.iterdir() if entry.name.endswith(".json"))


def config_from_dict(data: dict[str, Any], name: str, source: str) -> ModelConfig:
    """Read a Hugging Face config dict; `source` names it in messages."""
    if not isinstance(data, dict):
        raise HpimError(f"{source}: expected a JSON object, got {type(data).__name__}")
    keys = _Keys(data, source)
    model_type = data.get("model_type")
    if model_type is None:
        raise HpimError(f"{source}: key 'model_type' is missing")
    if not isinstance(model_type, str) or model_type not in READERS:
        raise HpimError(
            f"{source}: unknown model_type {model_type!r}; hpim supports "
            f"{', '.join(map(repr, READERS))}"
        )
    return READERS[model_type](name, keys)


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A zoo name, a `config.json`, or a folder holding one -> `ModelConfig`."""
    text = str(name_or_path)
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise HpimError(f"{name_or_path}: folder has no config.json")
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HpimError(f"{path}: not a readable JSON file: {error}") from None
        name = path.parent.name if path.name == "config.json" else path.stem
        return config_from_dict(data, name or "model", str(path))
    if text in zoo_names():
        data = json.loads((resources.files("hpim_ir.frontend") / "zoo" / f"{text}.json").read_text())
        return config_from_dict(data, text, f"zoo model {text}")
    close = [n for n in zoo_names() if n.split("-")[0] == text.split("-")[0]] or zoo_names()
    raise HpimError(
        f"unknown model {text!r}: not a zoo name, a config.json or a folder holding one "
        f"(zoo: {', '.join(close)})"
    )


def check_prompt(config: ModelConfig, prompt: int) -> None:
    """A prompt must be at least one token and fit the model's positions."""
    if not 1 <= prompt <= config.max_positions:
        raise HpimError(
            f"prompt length {prompt} is outside 1..{config.max_positions} "
            f"(max_position_embeddings of {config.name})"
        )


def attention_scale(config: ModelConfig) -> float:
    return 1.0 / math.sqrt(config.head_dim)
