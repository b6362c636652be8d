"""Reading hardware descriptions: TOML files and the presets shipped in the package.

`load_hardware(spec)` takes a preset name or a path to a `.toml` file and returns a validated
`Hardware`, or raises `HpimError` naming the file, the key path (`hbm.timing.nRCD`) and the bad
value. Loading runs in three steps, and nothing is built until all of them pass:

1. Each file is parsed with `tomllib` and its keys are checked against the schema (the field
   metadata of the dataclasses in `hpim_ir.hardware.config`): an unknown key, a scalar where
   a table belongs or a timing given both in cycles and in ns is rejected in the file that
   has it.
2. `extends = "preset-name"` (or `"other.toml"`, relative to the extending file) is resolved
   recursively, and the file's tables are merged over its parent's, key by key. Giving a
   timing as `nX` replaces the parent's `tX_ns` and vice versa. `name`, `description` and
   `extends` belong to their own file and are never inherited.
3. The merged tables are read into values (types, ranges, powers of two; `tX_ns` converted to
   cycles by rounding up, the JEDEC convention), the relations between values are checked
   (`nRC >= nRAS + nRP - 1`, ...), and only then are the frozen dataclasses built.

Each top-level table is one subsystem, read by the entry of `SECTIONS`; the SRAM-PIM and link
sections are added there beside `hbm`. One top-level key describes the machine as a whole and
is inherited like a table's: `policy`, the partitioning policy the machine is designed for
(validated against the policy registry of `convert-llm-to-pim`).
"""

import difflib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import Field, dataclass, fields, is_dataclass
from enum import Enum
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from hpim_ir.errors import HpimError
from hpim_ir.hardware.config import (
    MAX_BANKS,
    MAX_CHANNELS,
    Hardware,
    HbmConfig,
    HbmEnergy,
    HbmTiming,
    choice_problem,
    number_problem,
    range_problem,
)
from hpim_ir.hardware.sram import (
    LinkConfig,
    SramConfig,
    read_link_section,
    read_sram_section,
)

PRESETS = resources.files("hpim_ir.hardware") / "presets"

# Top-level keys that belong to one file and are not inherited through `extends`.
FILE_KEYS = ("name", "description", "extends")

# Top-level keys of the whole machine: strings, inherited through `extends`.
MACHINE_KEYS = ("policy",)

_CYCLES_KEY = re.compile(r"n([A-Z]\w*)")
_NS_KEY = re.compile(r"t([A-Z]\w*)_ns")


def preset_names() -> list[str]:
    """The hardware presets shipped with hpim, by name."""
    names = (entry.name for entry in PRESETS.iterdir())
    return sorted(name.removesuffix(".toml") for name in names if name.endswith(".toml"))


def load_hardware(spec: str | Path) -> Hardware:
    """A preset name or a path to a `.toml` file -> a validated `Hardware`."""
    source = _resolve(spec)
    tables, origins, labels = _merged(source, ())
    reader = _Reader(origins, labels)
    sections = {name: read(tables.get(name), name, reader) for name, (_, read) in SECTIONS.items()}
    data = source.data
    return Hardware(
        name=data.get("name", source.path.stem),
        description=data.get("description", ""),
        source_path=source.path,
        policy=_read_policy(tables.get("policy"), reader),
        **sections,
    )


def _read_policy(policy: str | None, reader: "_Reader") -> str | None:
    """The machine's default partitioning policy, which must be a registered one."""
    if policy is None:
        return None
    # Imported here: the passes import this module.
    from hpim_ir.passes.convert_llm_to_pim import POLICIES

    if policy not in POLICIES:
        raise reader.fail(
            ("policy",), f"policy = {policy!r}: unknown policy; registered: {', '.join(POLICIES)}"
        )
    return policy


@dataclass(frozen=True)
class _Source:
    """One parsed file; `label` names it in messages (`preset hpim`, or the path)."""

    label: str
    path: Path
    data: dict[str, Any]


def read_toml(label: str, path: Path, kind: str) -> dict[str, Any]:
    """The table of a TOML file; a missing, unreadable or invalid file is an HpimError
    naming it (`label`) and the `kind` of file it should be ("hardware", "baseline")."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HpimError(f"{label}: {kind} file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise HpimError(f"{label}: cannot read the {kind} file: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise HpimError(f"{label}: invalid TOML: {error}") from None


def _parse(label: str, path: Path) -> _Source:
    source = _Source(label, path, read_toml(label, path, "hardware"))
    _check_file(source)
    return source


def _resolve(spec: str | Path, relative_to: Path | None = None) -> _Source:
    text = str(spec)
    if isinstance(spec, Path) or text.endswith(".toml") or "/" in text:
        path = Path(text)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        return _parse(str(path), path)
    if text in preset_names():
        return _parse(f"preset {text}", Path(str(PRESETS / f"{text}.toml")))
    raise HpimError(
        f"unknown hardware {text!r}: not a preset ({', '.join(preset_names())}) nor a .toml file"
    )


def _merged(
    source: _Source, chain: tuple[Path, ...]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The section tables of `source` merged over those of its `extends` chain; for every
    key path the label of the file that set it; the labels of the chain, base first."""
    chain = (*chain, source.path.resolve())
    tables: dict[str, Any] = {}
    origins: dict[str, str] = {}
    labels: list[str] = []
    parent_spec = source.data.get("extends")
    if parent_spec is not None:
        try:
            parent = _resolve(parent_spec, relative_to=source.path.parent)
        except HpimError as error:
            raise HpimError(f"{source.label}: extends = {parent_spec!r}: {error}") from None
        if parent.path.resolve() in chain:
            cycle = " -> ".join(str(path) for path in (*chain, parent.path.resolve()))
            raise HpimError(f"{source.label}: extends = {parent_spec!r} makes a cycle: {cycle}")
        tables, origins, labels = _merged(parent, chain)
    sections = {key: value for key, value in source.data.items() if key not in FILE_KEYS}
    _merge_into(tables, sections, "", source.label, origins)
    return tables, origins, [*labels, source.label]


def _merge_into(
    base: dict[str, Any], override: dict[str, Any], prefix: str, label: str, origins: dict[str, str]
) -> None:
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _merge_into(base.setdefault(key, {}), value, f"{path}.", label, origins)
            continue
        base.pop(_alias(key), None)
        base[key] = value
        origins[path] = label


def _alias(key: str) -> str | None:
    """The other spelling of a timing key: `nRFC` <-> `tRFC_ns`."""
    if match := _CYCLES_KEY.fullmatch(key):
        return f"t{match[1]}_ns"
    if match := _NS_KEY.fullmatch(key):
        return f"n{match[1]}"
    return None


# ---------------------------------------------------------------------------------------
# Step 1: the keys of one file against the schema.


def _check_file(source: _Source) -> None:
    for key, value in source.data.items():
        if key in FILE_KEYS or key in MACHINE_KEYS:
            if not isinstance(value, str):
                raise HpimError(f"{source.label}: {key} = {value!r}: must be a string")
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise HpimError(f"{source.label}: {key} = {value!r}: must be a table [{key}]")
            _check_table(SECTIONS[key][0], value, key, source.label)
        else:
            raise HpimError(_unknown(source.label, key, key, [*FILE_KEYS, *MACHINE_KEYS, *SECTIONS]))


def _check_table(cls: type, table: dict[str, Any], prefix: str, label: str) -> None:
    allowed = _keys(cls)
    for key, value in table.items():
        path = f"{prefix}.{key}"
        if key not in allowed:
            raise HpimError(_unknown(label, path, key, list(allowed)))
        nested = allowed[key]
        if nested is not None:
            if not isinstance(value, dict):
                raise HpimError(f"{label}: {path} = {value!r}: must be a table [{path}]")
            _check_table(nested, value, path, label)
        elif isinstance(value, dict):
            raise HpimError(f"{label}: {path} is a table; it must be a single value")
        alias = _alias(key)
        if _CYCLES_KEY.fullmatch(key) and alias in table:
            raise HpimError(
                f"{label}: {path} and {prefix}.{alias} are both given; "
                "give the timing once, in cycles or in ns"
            )


def _keys(cls: type) -> dict[str, type | None]:
    """The TOML keys of a dataclass's table -> the dataclass of a sub-table, or None."""
    keys: dict[str, type | None] = {}
    for item in fields(cls):
        if item.metadata["derived"]:
            continue
        keys[item.name] = item.type if is_dataclass(item.type) else None
        if item.metadata["cycles"]:
            keys[_alias(item.name)] = None
    return keys


def _unknown(label: str, path: str, key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
    return f"{label}: unknown key {path} ({hint})"


# ---------------------------------------------------------------------------------------
# Step 3: merged tables -> values -> dataclasses.


class _Reader:
    """Reads merged values. A message names the file that set the offending key; when a
    relation between keys fails, the most derived file among theirs (`labels` is the
    `extends` chain, base first, the loaded file last)."""

    def __init__(self, origins: dict[str, str], labels: list[str]):
        self.origins = origins
        self.labels = labels
        self.shown: dict[str, str] = {}  # field path -> "key = value" as the user wrote it
        self.read: dict[str, Any] = {}  # field path -> checked value

    def newest(self, paths: tuple[str, ...]) -> str:
        """The most derived file that set one of `paths`."""
        files = [self.origins.get(path, self.labels[-1]) for path in paths]
        return max(files, key=self.labels.index)

    def fail(self, paths: tuple[str, ...], message: str) -> HpimError:
        return HpimError(f"{self.newest(paths)}: {message}")

    def table(self, tables: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
        if key not in tables:
            raise self.fail((prefix,), f"{prefix}.{key} is missing (a table [{prefix}.{key}])")
        return tables[key]

    def values(
        self, cls: type, table: dict[str, Any] | None, prefix: str, rate: str | None = None
    ) -> dict[str, Any]:
        """The scalar fields of `cls` from `table`; `rate` is the path of the data rate
        (Gb/s, already read) that converts `tX_ns` timings to cycles."""
        if table is None:
            raise self.fail((prefix,), f"{prefix} is missing (a table [{prefix}])")
        values = {}
        for item in fields(cls):
            if item.metadata["derived"] or is_dataclass(item.type):
                continue
            values[item.name] = self.value(item, table, prefix, rate)
        return values

    def value(
        self, item: Field[Any], table: dict[str, Any], prefix: str, rate: str | None
    ) -> Any:
        path = f"{prefix}.{item.name}"
        ns_key = _alias(item.name) if item.metadata["cycles"] else None
        if ns_key is not None and ns_key in table:
            ns_path = f"{prefix}.{ns_key}"
            ns = table[ns_key]
            if number_problem(ns) or not ns > 0:
                raise self.fail((ns_path,), f"{ns_path} = {ns!r}: must be a positive number of ns")
            assert rate is not None
            gbps = self.read[rate]
            value = math.ceil(Fraction(str(ns)) * Fraction(str(gbps)) / 4)
            # the cycle count is as much the data rate's doing as the nanoseconds'
            self.origins[path] = self.newest((ns_path, rate))
            self.shown[path] = f"{ns_path} = {ns!r} ({value} cycles at {gbps} Gb/s)"
        elif item.name in table:
            value = table[item.name]
            self.shown[path] = f"{path} = {value!r}"
        else:
            how = f" (give {item.name} in cycles or {ns_key} in ns)" if ns_key else ""
            raise self.fail((path,), f"{path} is missing{how}")
        self.read[path] = self.check(item, path, value)
        return self.read[path]

    def check(self, item: Field[Any], path: str, value: Any) -> Any:
        meta = item.metadata
        shown = self.shown[path]
        if isinstance(item.type, type) and issubclass(item.type, Enum):
            if problem := choice_problem(item.type, value):
                raise self.fail((path,), f"{shown}: {problem}")
            return item.type(value)
        if item.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail((path,), f"{shown}: must be an integer ({meta['unit']})")
        if item.type is float and (problem := number_problem(value)):
            raise self.fail((path,), f"{shown}: {problem} ({meta['unit']})")
        if problem := range_problem(value, meta):
            raise self.fail((path,), f"{shown}: {problem}")
        if meta["power_of_two"] and value & (value - 1):
            raise self.fail(
                (path,), f"{shown}: must be a power of two (the address mapping slices it as bits)"
            )
        return item.type(value)

    def require(self, condition: bool, path: str, message: str, *others: str) -> None:
        """`path` must satisfy `condition`; `others` are the keys the condition depends on."""
        if not condition:
            given = "; given " + ", ".join(self.shown[other] for other in others) if others else ""
            raise self.fail((path, *others), f"{self.shown[path]}: {message}{given}")


# key >= sum(terms) + slack, and why. Each timing is rounded up to whole cycles on its own,
# so a relation that holds in ns may lose one cycle (JEDEC tRC = tRAS + tRP: the public HBM3
# tables have nRC = nRAS + nRP - 1 at both 5.2 and 6.4 Gbps).
TIMING_RULES: tuple[tuple[str, tuple[str, ...], int, str], ...] = (
    ("nRC", ("nRAS", "nRP"), -1, "tRC = tRAS + tRP, less one cycle of rounding"),
    ("nRAS", ("nRCD",), 0, "a row stays open at least until it can be accessed"),
    ("nCCDS", ("nBL",), 0, "bursts on the data bus cannot overlap"),
    ("nCCDL", ("nCCDS",), 0, "same-bank-group spacing is never shorter"),
    ("nCCDAB", ("nCCDL",), 0, "a MAC_AB reads a column in every bank group"),
    ("nCCDSB", ("nCCDL",), 0, "a MAC_SB reads a column in every bank group"),
    ("nRRDL", ("nRRDS",), 0, "same-bank-group spacing is never shorter"),
    ("nFAW", ("nRRDS",), 0, "a four-activate window shorter than one ACT spacing is meaningless"),
    ("nWTRL", ("nWTRS",), 0, "same-bank-group turnaround is never shorter"),
    ("nRFC", ("nRC",), 0, "a refresh activates and precharges rows of every bank"),
    ("nREFI", ("nRFC",), 1, "refresh must leave time between refreshes"),
)


def _check_timing(values: dict[str, int], prefix: str, reader: _Reader) -> None:
    for key, terms, slack, why in TIMING_RULES:
        bound = sum(values[term] for term in terms) + slack
        offset = f" {'+-'[slack < 0]} {abs(slack)}" if slack else ""
        formula = " + ".join(terms) + offset
        if len(terms) > 1 or slack:
            formula += " = " + " + ".join(str(values[term]) for term in terms) + offset
        reader.require(
            values[key] >= bound,
            f"{prefix}.{key}",
            f"must be at least {formula} = {bound} ({why})",
            *(f"{prefix}.{term}" for term in terms),
        )


def _read_hbm(tables: dict[str, Any] | None, prefix: str, reader: _Reader) -> HbmConfig:
    values = reader.values(HbmConfig, tables, prefix)
    assert tables is not None
    timing_prefix = f"{prefix}.timing"
    timing_table = reader.table(tables, "timing", prefix)
    timing = reader.values(HbmTiming, timing_table, timing_prefix, f"{prefix}.data_rate_gbps")
    _check_timing(timing, timing_prefix, reader)
    energy = reader.values(HbmEnergy, reader.table(tables, "energy", prefix), f"{prefix}.energy")

    channels = values["stacks"] * values["channels"]
    reader.require(
        channels <= MAX_CHANNELS,
        f"{prefix}.channels",
        f"stacks x channels = {channels} channels: must be at most {MAX_CHANNELS}",
        f"{prefix}.stacks",
    )
    banks = math.prod(
        values[key] for key in ("pseudo_channels", "ranks", "bank_groups", "banks_per_group")
    )
    reader.require(
        banks <= MAX_BANKS,
        f"{prefix}.banks_per_group",
        f"pseudo_channels x ranks x bank_groups x banks_per_group = {banks} banks per "
        f"channel: must be at most {MAX_BANKS}",
        f"{prefix}.pseudo_channels",
        f"{prefix}.ranks",
        f"{prefix}.bank_groups",
    )
    column_bytes = values["column_bytes"]
    reader.require(
        values["pu_multipliers"] == column_bytes // 2,
        f"{prefix}.pu_multipliers",
        f"must equal column_bytes / 2 = {column_bytes // 2}: one MAC_AB multiplies one column "
        "of FP16 values, and the engine paces MACs by nCCDAB alone",
        f"{prefix}.column_bytes",
    )
    buffer_path = f"{prefix}.global_buffer_bytes"
    reader.require(
        values["global_buffer_bytes"] % column_bytes == 0,
        buffer_path,
        f"must be a multiple of column_bytes = {column_bytes} (the buffer holds whole columns)",
        f"{prefix}.column_bytes",
    )
    row_bytes = values["columns"] * column_bytes
    reader.require(
        values["global_buffer_bytes"] >= row_bytes,
        buffer_path,
        f"must hold one row of input, columns x column_bytes = {row_bytes} bytes "
        "(mac_ab col=K multiplies with buffer slot K)",
        f"{prefix}.columns",
        f"{prefix}.column_bytes",
    )
    return HbmConfig(
        **values,
        timing=HbmTiming(**timing, tCK_ns=float(4 / Fraction(str(values["data_rate_gbps"])))),
        energy=HbmEnergy(**energy),
    )


# Top-level table -> (its dataclass, its reader).
SECTIONS: dict[str, tuple[type, Callable[[dict[str, Any] | None, str, _Reader], Any]]] = {
    "hbm": (HbmConfig, _read_hbm),
    "sram": (SramConfig, read_sram_section),
    "link": (LinkConfig, read_link_section),
}
