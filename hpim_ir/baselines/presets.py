"""Reading GPU baseline descriptions: TOML presets shipped in the package, or users' files.

`load_baseline(spec)` takes a preset name (`baseline_names()`) or the path of a `.toml` file
and returns a validated `GpuSpec`, or raises `HpimError` naming the file, the key path
(`efficiency.bandwidth`) and the bad value. A file may `extends = "a100"` (a preset name, or
a path relative to the file) and override any keys; `name`, `description` and `extends` are
the file's own. Adding a baseline is adding a TOML file: the registry is the presets folder.

The schema (`SCHEMA`) maps each key path to a reader that checks the value's type and range.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from hpim_ir.baselines.gpu import GpuSpec, StackSpec
from hpim_ir.errors import HpimError
from hpim_ir.hardware.config import number_problem
from hpim_ir.hardware.loader import read_toml

PRESETS = resources.files("hpim_ir.baselines") / "presets"
FILE_KEYS = ("name", "description", "extends")

Reader = Callable[[str, Any], Any]  # (key path, value) -> value, or a problem via ValueError


def _number(low: float, high: float | None = None, *, low_open: bool = False) -> Reader:
    def read(path: str, value: Any) -> float:
        if problem := number_problem(value):
            raise ValueError(problem)
        if value < low or (low_open and value == low):
            raise ValueError(f"must be {'greater than' if low_open else 'at least'} {low:g}")
        if high is not None and value > high:
            raise ValueError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}]")
        return float(value)

    return read


def _count(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _flag(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _choice(*allowed: str) -> Reader:
    def read(path: str, value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(repr, allowed))}")
        return value

    return read


def _text(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


# Bounds far beyond any GPU, so that a typo is an error rather than an infinite time (a
# bandwidth of 1e-300 GB/s at an efficiency of 1e-300 underflows to 0): 1 PiB of memory, 1
# GB/s to 1 PB/s, 1 GFLOP/s to 1 EFLOP/s, efficiencies from 0.1%, a second per kernel
# launch or step.
_BANDWIDTH_GB_S = _number(1.0, 1e6)
_TFLOPS = _number(1e-3, 1e6)
_FRACTION = _number(1e-3, 1.0)
_MEMORY_GIB = _number(0.0, 2.0**20, low_open=True)
_OVERHEAD_US = _number(0.0, 1e6)

SCHEMA: dict[str, Reader] = {
    "gpu.part": _text,
    "gpu.memory_gib": _MEMORY_GIB,
    "gpu.bandwidth_gb_s": _BANDWIDTH_GB_S,
    "gpu.fp16_tflops": _TFLOPS,
    "efficiency.bandwidth": _FRACTION,
    "efficiency.compute": _FRACTION,
    "overhead.kernel_us": _OVERHEAD_US,
    "overhead.step_us": _OVERHEAD_US,
    "stack.fused_qkv": _flag,
    "stack.fused_gate_up": _flag,
    "stack.attention": _choice("fused", "unfused"),
    "stack.kv_cache": _choice("preallocated", "concat"),
    "stack.prefill_logits": _choice("last", "all"),
    **{
        f"stack.launches.{key}": _count
        for key in (
            "layer_norm", "rms_norm", "rotary", "residual", "activation", "gate_product",
            "attention",
        )
    },
}
_TABLES = {path.rsplit(".", 1)[0] for path in SCHEMA} | {"gpu", "stack"}


def baseline_names() -> list[str]:
    """The GPU baselines shipped with hpim, by name."""
    names = (entry.name for entry in PRESETS.iterdir())
    return sorted(name.removesuffix(".toml") for name in names if name.endswith(".toml"))


def load_baseline(spec: str | Path) -> GpuSpec:
    """A preset name or a `.toml` path -> a validated `GpuSpec`."""
    label, path, data = _resolve(spec)
    values = _flatten(_merged(label, path, data, ()), label)
    missing = [key for key in SCHEMA if key not in values]
    if missing:
        raise HpimError(f"{label}: key '{missing[0]}' is missing")
    read = {}
    for key, reader in SCHEMA.items():
        origin, value = values[key]
        try:
            read[key] = reader(key, value)
        except ValueError as problem:
            raise HpimError(f"{origin}: {key} = {value!r}: {problem}") from None
    launches = {
        key.removeprefix("stack.launches."): value
        for key, value in read.items()
        if key.startswith("stack.launches.")
    }
    return GpuSpec(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        part=read["gpu.part"],
        memory_gib=read["gpu.memory_gib"],
        bandwidth_gb_s=read["gpu.bandwidth_gb_s"],
        fp16_tflops=read["gpu.fp16_tflops"],
        bandwidth_efficiency=read["efficiency.bandwidth"],
        compute_efficiency=read["efficiency.compute"],
        kernel_us=read["overhead.kernel_us"],
        step_us=read["overhead.step_us"],
        stack=StackSpec(
            fused_qkv=read["stack.fused_qkv"],
            fused_gate_up=read["stack.fused_gate_up"],
            attention=read["stack.attention"],
            kv_cache=read["stack.kv_cache"],
            prefill_logits=read["stack.prefill_logits"],
            launches=launches,
        ),
    )


def _resolve(spec: str | Path, relative_to: Path | None = None) -> tuple[str, Path, dict]:
    text = str(spec)
    if isinstance(spec, Path) or text.endswith(".toml") or "/" in text:
        path = Path(text)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        label = str(path)
    elif text in baseline_names():
        path, label = Path(str(PRESETS / f"{text}.toml")), f"baseline preset {text}"
    else:
        raise HpimError(
            f"unknown GPU baseline {text!r}: not a preset ({', '.join(baseline_names())}) "
            "nor a .toml file"
        )
    data = read_toml(label, path, "baseline")
    for key in FILE_KEYS:
        if key in data and not isinstance(data[key], str):
            raise HpimError(f"{label}: {key} = {data[key]!r}: must be a string")
    return label, path, data


def _merged(label: str, path: Path, data: dict, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The file's tables over those of its `extends` chain; leaves are (label, value)."""
    chain = (*chain, path.resolve())
    merged: dict[str, Any] = {}
    parent_spec = data.get("extends")
    if parent_spec is not None:
        try:
            parent_label, parent_path, parent_data = _resolve(parent_spec, path.parent)
        except HpimError as error:
            raise HpimError(f"{label}: extends = {parent_spec!r}: {error}") from None
        if parent_path.resolve() in chain:
            raise HpimError(f"{label}: extends = {parent_spec!r} makes a cycle")
        merged = _merged(parent_label, parent_path, parent_data, chain)
    _merge_into(merged, {k: v for k, v in data.items() if k not in FILE_KEYS}, label)
    return merged


def _merge_into(base: dict[str, Any], override: dict[str, Any], label: str) -> None:
    for key, value in override.items():
        if isinstance(value, dict):
            if not isinstance(base.get(key), dict):
                base[key] = {}  # a table replaces an inherited value; _flatten reports it
            _merge_into(base[key], value, label)
        else:
            base[key] = (label, value)


def _flatten(tables: dict[str, Any], label: str, prefix: str = "") -> dict[str, tuple[str, Any]]:
    flat: dict[str, tuple[str, Any]] = {}
    for key, value in tables.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            if path in SCHEMA:
                raise HpimError(f"{label}: {path} is a table; it must be a single value")
            if path not in _TABLES:
                raise HpimError(_unknown(label, path))
            flat.update(_flatten(value, label, f"{path}."))
        elif path in _TABLES:
            raise HpimError(f"{value[0]}: {path} = {value[1]!r}: must be a table [{path}]")
        elif path not in SCHEMA:
            raise HpimError(_unknown(value[0], path))
        else:
            flat[path] = value
    return flat


def _unknown(label: str, path: str) -> str:
    close = difflib.get_close_matches(path, [*SCHEMA, *_TABLES], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{label}: unknown key '{path}'{hint}"
