"""Model weights by `llm.weight` symbol: Hugging Face checkpoints and seeded random weights.

A `Weights` maps each weight symbol of an `llm` (or `pim`) module to the array its
`llm.weight` declares, layered weights stacked layer first, stored in FP16 as the accelerator
stores them. It comes from

- `load_weights(module_or_config, folder)`: a model folder in Hugging Face layout,
  `model.safetensors` or a sharded `model.safetensors.index.json`, tensors in F16, F32, F64 or
  BF16 (converted to FP16; a value beyond FP16's range is an error, not an infinity). Tensors
  are found by the symbol's `hf_name`, or without its leading `model.` (checkpoints saved from
  the base model, such as some OPT ones, as transformers' `base_model_prefix` allows).
  A tied LM head needs no `lm_head.weight`: the IR then reads `@embed_tokens`.
- `random_weights(module, seed)`: normal(0, `std`) matrices and biases and norm gains of
  1 + normal(0, 0.1), deterministic per seed.

`save_model(folder, config, weights)` writes a folder `load_weights` (and transformers) reads.
Every problem is an `HpimError` naming the tensor and, for a mis-shaped one, both shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from xdsl.dialects.builtin import ModuleOp

from hpim_ir.dialects import llm
from hpim_ir.errors import HpimError
from hpim_ir.frontend import ModelConfig, build_module

SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"

# Spread of random norm gains around 1: large enough that a lost gain changes the logits.
GAIN_STD = 0.1

# Safetensors dtypes numpy reads directly; BF16 (which numpy lacks) is read bit by bit.
_NUMPY_DTYPES = ("F16", "F32", "F64")


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class WeightSpec:
    """One `llm.weight` declaration: its symbol, shape (layer first if layered), HF name."""

    symbol: str
    shape: tuple[int, ...]
    hf_name: str | None
    layered: bool

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        """The shape of one checkpoint tensor (one layer's slice of a layered weight)."""
        return self.shape[1:] if self.layered else self.shape

    def hf_names(self) -> list[str]:
        """The checkpoint tensors this weight stacks, one per layer (or the single one)."""
        if self.hf_name is None:
            raise HpimError(f"weight @{self.symbol} has no hf_name to find it in a checkpoint")
        if not self.layered:
            return [self.hf_name]
        return [self.hf_name.replace("{layer}", str(layer)) for layer in range(self.shape[0])]


def weight_specs(module: ModuleOp) -> list[WeightSpec]:
    """The weight declarations of a module, in order."""
    return [
        WeightSpec(
            symbol=op.sym_name.data,
            shape=tuple(op.type.get_shape()),
            hf_name=op.hf_name.data if op.hf_name is not None else None,
            layered=op.layered is not None,
        )
        for op in module.body.block.ops
        if isinstance(op, llm.WeightBase)
    ]


class Weights(Mapping[str, np.ndarray]):
    """Symbol -> read-only FP16 array, shaped as the symbol's `llm.weight` declares it."""

    def __init__(self, specs: list[WeightSpec], arrays: Mapping[str, np.ndarray]):
        _check_shapes(specs, arrays, "the specs declare")
        self.specs = {spec.symbol: spec for spec in specs}
        self._arrays: dict[str, np.ndarray] = {}
        self._widened: dict[str, np.ndarray] = {}
        for spec in specs:
            array = np.ascontiguousarray(arrays[spec.symbol], dtype=np.float16)
            array.flags.writeable = False
            self._arrays[spec.symbol] = array

    def __getitem__(self, symbol: str) -> np.ndarray:
        return self._arrays[symbol]

    def widened(self, symbol: str) -> np.ndarray:
        """The same values as FP32 (read-only), converted once: computing in FP32 would
        otherwise widen every weight again at every step."""
        if symbol not in self._widened:
            wide = self._arrays[symbol].astype(np.float32)
            wide.flags.writeable = False
            self._widened[symbol] = wide
        return self._widened[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def check_fits(self, module: ModuleOp) -> None:
        """Every weight the module declares is here with the declared shape."""
        _check_shapes(weight_specs(module), self._arrays, "the module declares")


def _check_shapes(specs: list[WeightSpec], arrays: Mapping[str, np.ndarray], declarer: str) -> None:
    for spec in specs:
        if spec.symbol not in arrays:
            raise HpimError(f"the weights have no @{spec.symbol}, which {declarer}")
        shape = np.shape(arrays[spec.symbol])
        if shape != spec.shape:
            raise HpimError(
                f"the weights give @{spec.symbol} shape {_fmt(shape)}, but {declarer} "
                f"{_fmt(spec.shape)}"
            )


def _as_module(module_or_config: ModuleOp | ModelConfig) -> ModuleOp:
    if isinstance(module_or_config, ModelConfig):
        return build_module(module_or_config, phase="decode", prompt=1)
    return module_or_config


def random_weights(
    module_or_config: ModuleOp | ModelConfig, seed: int, std: float = 0.02
) -> Weights:
    """Random weights for every symbol the module declares, deterministic per `seed`.

    Matrices, embeddings and biases are normal(0, `std`) (Hugging Face's init scale, so
    activations stay finite through many layers); the gains of LayerNorm / RMSNorm are
    1 + normal(0, 0.1). Unlike a fresh Hugging Face model, biases and gains are not 0 and 1,
    so every tensor affects the logits and a test sees one that is lost.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HpimError(f"the seed of random weights must be a non-negative integer, got {seed!r}")
    module = _as_module(module_or_config)
    gains = {
        op.gamma.owner.weight.root_reference.data
        for op in module.walk()
        if isinstance(op, (llm.LayerNormBase, llm.RMSNormBase))
        and isinstance(op.gamma.owner, llm.GetWeightBase)
    }
    rng = np.random.default_rng(seed)
    specs = weight_specs(module)
    arrays = {}
    for spec in specs:
        noise = rng.standard_normal(spec.shape, dtype=np.float32)
        arrays[spec.symbol] = 1 + GAIN_STD * noise if spec.symbol in gains else std * noise
    return Weights(specs, arrays)


class _Checkpoint:
    """The tensors of a Hugging Face model folder: one safetensors file or indexed shards."""

    def __init__(self, folder: Path, files: ExitStack):
        if not folder.is_dir():
            raise HpimError(f"{folder}: not a folder")
        self.folder = folder
        self._files = files
        self._open: dict[Path, Any] = {}
        if (folder / SHARD_INDEX).is_file():
            self.file_of = self._read_index(folder / SHARD_INDEX)
        elif (folder / SINGLE_FILE).is_file():
            path = folder / SINGLE_FILE
            self.file_of = dict.fromkeys(self._handle(path).keys(), path)
        else:
            raise HpimError(
                f"{folder}: no {SINGLE_FILE} or {SHARD_INDEX} (hpim reads safetensors "
                "checkpoints; convert other formats with transformers' save_pretrained)"
            )

    def _read_index(self, path: Path) -> dict[str, Path]:
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise HpimError(f"{path}: not a shard index with a 'weight_map': {error}") from None
        if not isinstance(weight_map, dict):
            raise HpimError(
                f"{path}: 'weight_map' must map tensor names to shard files, got "
                f"{type(weight_map).__name__}"
            )
        for name, shard in weight_map.items():
            if not isinstance(shard, str):
                raise HpimError(
                    f"{path}: 'weight_map' gives tensor '{name}' the shard {shard!r}; "
                    "a shard is a file name"
                )
        return {name: self.folder / shard for name, shard in weight_map.items()}

    def _handle(self, path: Path) -> Any:
        if path not in self._open:
            if not path.is_file():
                raise HpimError(f"{path}: shard listed in {SHARD_INDEX} does not exist")
            try:
                self._open[path] = self._files.enter_context(safe_open(path, framework="numpy"))
            except (SafetensorError, OSError) as error:
                raise HpimError(f"{path}: not a readable safetensors file: {error}") from None
        return self._open[path]

    def tensor(self, name: str, spec: WeightSpec) -> np.ndarray:
        """Tensor `name` as FP16, checked against the shape `spec` needs."""
        found = next(
            (n for n in (name, name.removeprefix("model.")) if n in self.file_of), None
        )
        if found is None:
            raise HpimError(
                f"{self.folder}: tensor '{name}' is missing (@{spec.symbol} needs shape "
                f"{_fmt(spec.tensor_shape)})"
            )
        path = self.file_of[found]
        handle = self._handle(path)
        dtype = handle.get_slice(found).get_dtype()
        if dtype in _NUMPY_DTYPES:
            values = handle.get_tensor(found)
        elif dtype == "BF16":
            values = _read_bf16(path, found)
        else:
            raise HpimError(
                f"{path}: tensor '{found}' has dtype {dtype}; hpim reads F16, F32, F64 and BF16"
            )
        if values.shape != spec.tensor_shape:
            raise HpimError(
                f"{path}: tensor '{found}' has shape {_fmt(values.shape)}, but @{spec.symbol} "
                f"needs {_fmt(spec.tensor_shape)}"
            )
        if not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise HpimError(f"{path}: tensor '{found}' holds {bad} (the weights must be finite)")
        with np.errstate(over="ignore"):
            half = values.astype(np.float16)
        if not np.isfinite(half).all():
            raise HpimError(
                f"{path}: tensor '{found}' does not fit FP16: largest magnitude "
                f"{np.max(np.abs(values.astype(np.float64))):.6g} (FP16 holds up to 65504)"
            )
        return half


def _read_bf16(path: Path, name: str) -> np.ndarray:
    """A BF16 tensor as FP32, read from the safetensors layout (8-byte little-endian header
    size, JSON header with `data_offsets`, data): numpy has no bfloat16, and a BF16 value is
    the upper half of the FP32 with the same bits."""
    with path.open("rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(header_size))[name]
    begin, end = entry["data_offsets"]
    bits = np.fromfile(path, dtype="<u2", count=(end - begin) // 2, offset=8 + header_size + begin)
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def load_weights(module_or_config: ModuleOp | ModelConfig, folder: str | Path) -> Weights:
    """The weights a module declares, read from a Hugging Face model folder."""
    specs = weight_specs(_as_module(module_or_config))
    with ExitStack() as files:
        checkpoint = _Checkpoint(Path(folder), files)
        arrays = {}
        for spec in specs:
            tensors = [checkpoint.tensor(name, spec) for name in spec.hf_names()]
            arrays[spec.symbol] = np.stack(tensors) if spec.layered else tensors[0]
    return Weights(specs, arrays)


def save_model(
    folder: str | Path, config: Mapping[str, Any], weights: Weights, dtype: str = "float16"
) -> Path:
    """Write `config.json` and `model.safetensors` (HF tensor names, `dtype` float16 or
    float32) into `folder`, creating it; returns the folder."""
    if dtype not in ("float16", "float32"):
        raise HpimError(f"save_model writes float16 or float32, not {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    tensors = {}
    for spec in weights.specs.values():
        stacked = weights[spec.symbol] if spec.layered else weights[spec.symbol][None]
        for name, tensor in zip(spec.hf_names(), stacked, strict=True):
            tensors[name] = np.ascontiguousarray(tensor, dtype=dtype)
    # transformers loads a safetensors file only if its metadata says it holds PyTorch tensors.
    save_file(tensors, folder / SINGLE_FILE, metadata={"format": "pt"})
    return folder
