"""The SRAM-PIM subsystem and the link between the subsystems, as hardware descriptions.

`SramConfig` is the `[sram]` table of a hardware file: the cores (pipeline, activation memory
and their compute units `TcuConfig`, `VcuConfig`, `PimConfig`, `TransposeConfig`), the
network-on-chip between them (`NocConfig`), the clock, and where the KV cache lives
(`KvPlacement`). `LinkConfig` is the `[link]` table: the path between the HBM-PIM and the
SRAM-PIM subsystems. Field metadata (`spec`, shared with `config.py`) is the schema, so the
loader's key check and `docs/sram-engine.md` read the same table.

`parse_sram_section(table, path)` and `parse_link_section(table, path)` validate one table
and build the frozen dataclasses; every bad, missing or unknown key raises `HpimError` with
one message naming the file, the key path and the value. `read_sram_section` and
`read_link_section` are the same functions in the loader's section-reader signature.
"""

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any

from hpim_ir.errors import HpimError
from hpim_ir.hardware.config import (
    MAX_CLOCK_MHZ,
    MAX_CYCLES,
    MAX_LINK_GBS,
    choice_problem,
    number_problem,
    range_problem,
    spec,
)


class KvPlacement(str, Enum):
    """Where the KV cache lives between decode steps."""

    SRAM = "sram"
    """Resident in the PIM macros of the cores: the program allocates it as PIM buffers,
    whose size the engine checks against the macros at every context length."""
    HBM = "hbm"
    """Stored in HBM and streamed over the link into the macros for every token
    (`sram.stream_mvm`); only the current token's K and V are produced on chip."""


class NocTopology(str, Enum):
    """How the cores are connected."""

    MESH = "mesh"
    """A 2-D mesh, cores numbered row-major, `mesh_cols` per row, dimension-order (XY)
    routing over directed links between neighbours."""
    RING = "ring"
    """A bidirectional ring in core order; a transfer takes the shorter direction
    (clockwise, to higher core numbers, on a tie)."""


def choice(doc: str) -> Any:
    """A field whose TOML value is one of its `Enum` type's values."""
    return spec(doc, "choice")


def optional(doc: str, unit: str) -> Any:
    """A field that may be absent (None); when present it is checked like `spec`."""
    return field(default=None, metadata=spec(doc, unit).metadata)


@dataclass(frozen=True)
class TcuConfig:
    """The tensor compute unit: a weight-stationary systolic array of `rows x cols`
    processing elements, one FP16 multiply-accumulate per element per cycle."""

    rows: int = spec("PE rows (the reduction dimension K of a weight fold)", "count")
    cols: int = spec("PE columns (the output dimension N of a weight fold)", "count")


@dataclass(frozen=True)
class VcuConfig:
    """The vector compute unit: `lanes` FP16 elements per cycle through its datapath; each
    function has its own throughput (elements per cycle, at most `lanes`) and every pass
    over a vector pays `latency_cycles` of pipeline fill and drain."""

    lanes: int = spec("datapath width: FP16 elements read and written per cycle", "elements")
    latency_cycles: int = spec(
        "pipeline fill and drain of one pass over a vector", "cycles", maximum=MAX_CYCLES
    )
    elementwise_per_cycle: int = spec("add, multiply (FMA), max, ReLU", "elements/cycle")
    reduce_per_cycle: int = spec(
        "max and sum reductions (adder / comparator tree)", "elements/cycle"
    )
    exp_per_cycle: int = spec("exponential (special-function unit)", "elements/cycle")
    gelu_per_cycle: int = spec("GELU (tanh form, special-function unit)", "elements/cycle")
    silu_per_cycle: int = spec("SiLU (sigmoid, special-function unit)", "elements/cycle")
    rsqrt_per_cycle: int = spec(
        "sqrt, rsqrt and reciprocal (special-function unit)", "elements/cycle"
    )


@dataclass(frozen=True)
class PimConfig:
    """The PIM unit: `groups x macros_per_group` SRAM macros, each storing
    `macro_rows x macro_cols` FP16 values and multiplying with `multipliers_per_macro`
    FP16 multipliers: one input element against that many stored values per cycle."""

    groups: int = spec("macro groups", "count")
    macros_per_group: int = spec("macros per group", "count")
    multipliers_per_macro: int = spec("FP16 multipliers of one macro (its lanes)", "count")
    macro_rows: int = spec("rows of one macro", "FP16 values")
    macro_cols: int = spec("columns of one macro (a multiple of the multipliers)", "FP16 values")
    write_bytes_per_cycle: int = spec("bytes written into the macros per cycle", "bytes/cycle")
    mvm_latency_cycles: int = spec(
        "pipeline latency of a matrix-vector product (input alignment, multiply, adder "
        "tree across macros, normalization)",
        "cycles",
        minimum=0,
        maximum=MAX_CYCLES,
    )

    @property
    def macros(self) -> int:
        """Macros of the unit."""
        return self.groups * self.macros_per_group

    @property
    def capacity_bytes(self) -> int:
        """FP16 storage of all macros."""
        return self.macros * self.macro_rows * self.macro_cols * 2

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle of the unit."""
        return self.macros * self.multipliers_per_macro


@dataclass(frozen=True)
class TransposeConfig:
    """The transpose unit: a matrix in activation memory to its transpose."""

    elements_per_cycle: int = spec("FP16 elements transposed per cycle", "elements/cycle")
    latency_cycles: int = spec(
        "pipeline fill and drain of one transpose", "cycles", minimum=0, maximum=MAX_CYCLES
    )


@dataclass(frozen=True)
class NocConfig:
    """The network-on-chip between the cores."""

    topology: NocTopology = choice("`mesh` or `ring`")
    link_bytes_per_cycle: int = spec("bandwidth of one directed link", "bytes/cycle")
    hop_cycles: int = spec("router + link latency per hop", "cycles", maximum=MAX_CYCLES)
    mesh_cols: int | None = optional("cores per mesh row (a mesh only)", "count")


@dataclass(frozen=True)
class SramConfig:
    """The SRAM-PIM subsystem: `cores` identical cores on one clock. Each core issues one
    instruction per cycle through a `pipeline_stages`-deep in-order pipeline to its units
    (TCU, VCU, SCU, PIM unit, transpose and transfer units) and has `activation_memory_bytes`
    of activation memory."""

    cores: int = spec("cores", "count")
    clock_mhz: float = spec("clock of the cores and the NoC", "MHz", maximum=MAX_CLOCK_MHZ)
    pipeline_stages: int = spec(
        "in-order fetch/decode/execute pipeline depth", "stages", maximum=MAX_CYCLES
    )
    activation_memory_bytes: int = spec("activation memory per core", "bytes")
    kv_cache: KvPlacement = choice("where the KV cache lives: `sram` or `hbm`")
    tcu: TcuConfig = spec("tensor compute unit", "")
    vcu: VcuConfig = spec("vector compute unit", "")
    pim: PimConfig = spec("PIM unit", "")
    transpose: TransposeConfig = spec("transpose unit", "")
    noc: NocConfig = spec("network-on-chip", "")

    @property
    def cycle_ns(self) -> float:
        """Clock period in ns."""
        return 1000 / self.clock_mhz

    @property
    def mesh_rows(self) -> int:
        """Rows of the mesh (1 for a ring)."""
        return self.cores // self.noc.mesh_cols if self.noc.mesh_cols else 1

    @property
    def tcu_macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle of one core's TCU."""
        return self.tcu.rows * self.tcu.cols

    @property
    def peak_tflops(self) -> float:
        """Peak FP16 throughput of all TCUs and PIM units in TFLOP/s (a MAC is 2 FLOPs)."""
        macs = self.cores * (self.tcu_macs_per_cycle + self.pim.macs_per_cycle)
        return 2 * macs * self.clock_mhz / 1e6


@dataclass(frozen=True)
class LinkConfig:
    """The link between the HBM-PIM and the SRAM-PIM subsystems: one shared path in each
    direction, `bandwidth_gbs` each way, `latency_ns` from the first byte sent to the first
    byte received."""

    bandwidth_gbs: float = spec(
        "bandwidth in each direction", "GB/s", minimum=0.001, maximum=MAX_LINK_GBS
    )
    # At most a millisecond, as a latency in cycles (MAX_CYCLES) at 1 GHz.
    latency_ns: float = spec("latency of a transfer", "ns", minimum=0, maximum=MAX_CYCLES)

    def bytes_per_cycle(self, clock_mhz: float) -> Fraction:
        """Bytes the link moves per cycle of a `clock_mhz` clock, exactly."""
        return Fraction(str(self.bandwidth_gbs)) * 1000 / Fraction(str(clock_mhz))

    def latency_cycles(self, clock_mhz: float) -> int:
        """The latency in whole cycles of a `clock_mhz` clock (rounded up)."""
        return math.ceil(Fraction(str(self.latency_ns)) * Fraction(str(clock_mhz)) / 1000)


# ---------------------------------------------------------------------------------------
# Validation.

# The origin of a message: a file label, or (the loader's view through `extends`) a map
# from the key paths involved to the label of the file that set them.
Origin = str | Path | Callable[[tuple[str, ...]], str]


class _Table:
    """Reads one TOML table against a dataclass's schema, naming the origin on failure."""

    def __init__(self, origin: Origin):
        self.origin = origin
        self.shown: dict[str, str] = {}  # key path -> "key = value" as written

    def fail(self, paths: tuple[str, ...], message: str) -> HpimError:
        label = self.origin(paths) if callable(self.origin) else str(self.origin)
        return HpimError(f"{label}: {message}")

    def read(self, cls: type, table: Any, prefix: str) -> Any:
        """`table` (a dict, or None when missing) -> an instance of `cls`."""
        if table is None:
            raise self.fail((prefix,), f"{prefix} is missing (a table [{prefix}])")
        if not isinstance(table, dict):
            raise self.fail((prefix,), f"{prefix} = {table!r}: must be a table [{prefix}]")
        known = {item.name: item for item in fields(cls)}
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise self.fail((f"{prefix}.{key}",), f"unknown key {prefix}.{key} ({hint})")
        values = {}
        for name, item in known.items():
            path = f"{prefix}.{name}"
            if is_dataclass(item.type):
                values[name] = self.read(item.type, table.get(name), path)
            elif name in table:
                values[name] = self.check(item, path, table[name])
            elif item.default is None:
                values[name] = None
            else:
                raise self.fail((path,), f"{path} is missing")
        return cls(**values)

    def check(self, item: Any, path: str, value: Any) -> Any:
        meta = item.metadata
        kind = item.type if isinstance(item.type, type) else int  # `int | None` -> int
        shown = self.shown[path] = f"{path} = {value!r}"
        if isinstance(value, dict):
            raise self.fail((path,), f"{path} is a table; it must be a single value")
        if issubclass(kind, Enum):
            if problem := choice_problem(kind, value):
                raise self.fail((path,), f"{shown}: {problem}")
            return kind(value)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail((path,), f"{shown}: must be an integer ({meta['unit']})")
        if kind is float and (problem := number_problem(value)):
            raise self.fail((path,), f"{shown}: {problem} ({meta['unit']})")
        if problem := range_problem(value, meta):
            raise self.fail((path,), f"{shown}: {problem}")
        return kind(value)

    def require(self, condition: bool, path: str, message: str, *others: str) -> None:
        """`path` must satisfy `condition`; `others` are the keys the condition involves."""
        if not condition:
            given = "; given " + ", ".join(self.shown[o] for o in others) if others else ""
            raise self.fail((path, *others), f"{self.shown[path]}: {message}{given}")


# Core numbers travel in int16 fields of the instruction stream (`sim/sram/program.py`).
MAX_CORES = 2**15 - 1


def parse_sram_section(table: Any, path: Origin, prefix: str = "sram") -> SramConfig:
    """Validate an `[sram]` table (as `tomllib` read it) -> `SramConfig`. `path` names the
    hardware file in messages (or maps key paths to the file that set them)."""
    reader = _Table(path)
    config: SramConfig = reader.read(SramConfig, table, prefix)
    reader.require(config.cores <= MAX_CORES, f"{prefix}.cores", f"must be at most {MAX_CORES}")
    vcu = config.vcu
    for item in fields(VcuConfig):
        if item.name.endswith("_per_cycle"):
            reader.require(
                getattr(vcu, item.name) <= vcu.lanes,
                f"{prefix}.vcu.{item.name}",
                f"must be at most lanes = {vcu.lanes} (a function cannot outrun the datapath)",
                f"{prefix}.vcu.lanes",
            )
    pim = config.pim
    reader.require(
        pim.macro_cols % pim.multipliers_per_macro == 0,
        f"{prefix}.pim.macro_cols",
        f"must be a multiple of multipliers_per_macro = {pim.multipliers_per_macro} "
        "(a macro row is read one multiplier-wide slice per cycle)",
        f"{prefix}.pim.multipliers_per_macro",
    )
    noc = config.noc
    cols_path = f"{prefix}.noc.mesh_cols"
    if noc.topology is NocTopology.MESH:
        if noc.mesh_cols is None:
            raise reader.fail((cols_path,), f"{cols_path} is missing (topology = 'mesh')")
        reader.require(
            config.cores % noc.mesh_cols == 0,
            cols_path,
            f"must divide cores = {config.cores} (the mesh is full)",
            f"{prefix}.cores",
        )
    elif noc.mesh_cols is not None:
        reader.require(False, cols_path, "only a mesh has columns", f"{prefix}.noc.topology")
    return config


def parse_link_section(table: Any, path: Origin, prefix: str = "link") -> LinkConfig:
    """Validate a `[link]` table -> `LinkConfig`; `path` as for `parse_sram_section`."""
    return _Table(path).read(LinkConfig, table, prefix)


def read_sram_section(table: Any, prefix: str, reader: Any) -> SramConfig | None:
    """`parse_sram_section` as a section reader of `hpim_ir.hardware.loader.SECTIONS`:
    None when the machine has no `[sram]` table; messages name the file of the `extends`
    chain that set the offending key (`reader.newest`)."""
    return None if table is None else parse_sram_section(table, reader.newest, prefix)


def read_link_section(table: Any, prefix: str, reader: Any) -> LinkConfig | None:
    """`parse_link_section` as a section reader (see `read_sram_section`)."""
    return None if table is None else parse_link_section(table, reader.newest, prefix)
