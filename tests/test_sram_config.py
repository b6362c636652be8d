"""The `[sram]` and `[link]` hardware sections: validation messages, derived figures, the
proposed `hpim` preset sections (in docs/sram-engine.md), and the loader's section-reader
form working through `extends`."""

import copy
import dataclasses
import re
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpim_ir.errors import HpimError
from hpim_ir.hardware import loader
from hpim_ir.hardware.sram import (
    KvPlacement,
    LinkConfig,
    NocTopology,
    SramConfig,
    parse_link_section,
    parse_sram_section,
    read_link_section,
    read_sram_section,
)
from tests.sram_support import tables

ROOT = Path(__file__).parents[1]


def sram_error(**overrides) -> str:
    with pytest.raises(HpimError) as caught:
        parse_sram_section(tables(**overrides)["sram"], "hw.toml")
    return str(caught.value)


def test_the_small_machine_parses() -> None:
    sram = parse_sram_section(tables()["sram"], "hw.toml")
    assert sram.kv_cache is KvPlacement.HBM and sram.noc.topology is NocTopology.MESH
    # 2 groups x 2 macros of 8 x 8 FP16: 4 x 64 x 2 B = 512 B; 4 x 4 lanes = 16 MAC/cycle
    assert (sram.pim.macros, sram.pim.capacity_bytes, sram.pim.macs_per_cycle) == (4, 512, 16)
    assert sram.mesh_rows == 2 and sram.cycle_ns == 1.0
    # 4 cores x (16 TCU + 16 PIM) MACs x 2 FLOPs x 1e9 Hz = 256 GFLOP/s
    assert sram.peak_tflops == pytest.approx(0.256)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"sram": {"cores": 0}}, "hw.toml: sram.cores = 0: must be at least 1 (count)"),
        ({"sram": {"cores": 40000}}, "hw.toml: sram.cores = 40000: must be at most 32767"),
        ({"sram": {"clock_mhz": "fast"}}, "sram.clock_mhz = 'fast': must be a finite number (MHz)"),
        ({"sram": {"clock_mhz": float("inf")}}, "sram.clock_mhz = inf: must be a finite number"),
        (
            {"sram": {"pipeline_stages": 2.5}},
            "sram.pipeline_stages = 2.5: must be an integer (stages)",
        ),
        (
            {"sram": {"activation_memory_bytes": True}},
            "sram.activation_memory_bytes = True: must be an integer",
        ),
        ({"sram": {"kv_cache": "dram"}}, "sram.kv_cache = 'dram': must be one of 'sram', 'hbm'"),
        ({"sram": {"coress": 4}}, "hw.toml: unknown key sram.coress (did you mean 'cores'?)"),
        ({"sram": {"tcu": 3}}, "hw.toml: sram.tcu = 3: must be a table [sram.tcu]"),
        ({"sram": {"cores": {"n": 4}}}, "sram.cores is a table; it must be a single value"),
        ({"sram_pim": {"groups": -1}}, "sram.pim.groups = -1: must be at least 1 (count)"),
        (
            {"sram_pim": {"mvm_latency_cycles": -1}},
            "sram.pim.mvm_latency_cycles = -1: must be at least 0",
        ),
        (
            {"sram_pim": {"macro_cols": 10}},
            "sram.pim.macro_cols = 10: must be a multiple of multipliers_per_macro = 4 (a macro "
            "row is read one multiplier-wide slice per cycle); given "
            "sram.pim.multipliers_per_macro = 4",
        ),
        (
            {"sram_vcu": {"exp_per_cycle": 9}},
            "sram.vcu.exp_per_cycle = 9: must be at most lanes = 8 (a function cannot outrun the "
            "datapath); given sram.vcu.lanes = 8",
        ),
        (
            {"sram_vcu": {"sqrt_per_cycle": 1}},
            "unknown key sram.vcu.sqrt_per_cycle (did you mean 'rsqrt_per_cycle'?)",
        ),
        (
            {"sram_noc": {"topology": "torus"}},
            "sram.noc.topology = 'torus': must be one of 'mesh', 'ring'",
        ),
        (
            {"sram_noc": {"mesh_cols": 3}},
            "sram.noc.mesh_cols = 3: must divide cores = 4 (the mesh is full); "
            "given sram.cores = 4",
        ),
        (
            {"sram_noc": {"topology": "ring"}},
            "sram.noc.mesh_cols = 2: only a mesh has columns; given sram.noc.topology = 'ring'",
        ),
    ],
)
def test_bad_sram_values_are_named(overrides: dict, expected: str) -> None:
    assert expected in sram_error(**overrides)


@pytest.mark.parametrize(
    "table, key, expected",
    [
        ("sram", "cores", "hw.toml: sram.cores is missing"),
        ("sram", "tcu", "hw.toml: sram.tcu is missing (a table [sram.tcu])"),
        ("sram.pim", "write_bytes_per_cycle", "hw.toml: sram.pim.write_bytes_per_cycle is missing"),
        ("sram.noc", "mesh_cols", "hw.toml: sram.noc.mesh_cols is missing (topology = 'mesh')"),
    ],
)
def test_missing_sram_keys_are_named(table: str, key: str, expected: str) -> None:
    data = tables()
    section = data
    for part in table.split("."):
        section = section[part]
    del section[key]
    with pytest.raises(HpimError, match=re.escape(expected)):
        parse_sram_section(data["sram"], "hw.toml")


def test_a_ring_needs_no_columns() -> None:
    data = tables(sram_noc={"topology": "ring"})
    del data["sram"]["noc"]["mesh_cols"]
    sram = parse_sram_section(data["sram"], "hw.toml")
    assert sram.noc.topology is NocTopology.RING and sram.mesh_rows == 1


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"bandwidth_gbs": 0}, "hw.toml: link.bandwidth_gbs = 0: must be at least 0.001 (GB/s)"),
        ({"latency_ns": -1}, "hw.toml: link.latency_ns = -1: must be at least 0 (ns)"),
        ({"latency_ns": "slow"}, "link.latency_ns = 'slow': must be a finite number (ns)"),
        ({"latencyns": 3}, "unknown key link.latencyns (did you mean 'latency_ns'?)"),
    ],
)
def test_bad_link_values_are_named(values: dict, expected: str) -> None:
    with pytest.raises(HpimError, match=re.escape(expected)):
        parse_link_section(tables(link=values)["link"], "hw.toml")


def test_link_rates_are_exact() -> None:
    # 2662.4 GB/s at 1000 MHz is 2662.4 = 13312/5 bytes per cycle, held as a fraction;
    # 30 ns at 1000 MHz is 30 cycles, 10 ns at 333 MHz is ceil(3.33) = 4.
    link = LinkConfig(bandwidth_gbs=2662.4, latency_ns=30)
    assert link.bytes_per_cycle(1000) == Fraction(13312, 5)
    assert link.latency_cycles(1000) == 30
    assert LinkConfig(bandwidth_gbs=1, latency_ns=10).latency_cycles(333) == 4
    with pytest.raises(HpimError, match="link is missing"):
        parse_link_section(None, "hw.toml")


# ---------------------------------------------------------------------------------------
# The proposed preset sections: the TOML block of docs/sram-engine.md.


def preset_block() -> str:
    doc = (ROOT / "docs" / "sram-engine.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    return next(block for block in blocks if "[sram]" in block)


def test_the_documented_preset_sections_are_a_valid_hpim_machine() -> None:
    data = tomllib.loads(preset_block())
    sram = parse_sram_section(data["sram"], "preset")
    link = parse_link_section(data["link"], "preset")
    # paper facts: 32 cores, 64 x 64 TCU, 16 groups of macros with 8 multipliers, 384 KB
    assert sram.cores == 32 and (sram.tcu.rows, sram.tcu.cols) == (64, 64)
    assert (sram.pim.groups, sram.pim.multipliers_per_macro) == (16, 8)
    assert sram.activation_memory_bytes == 384 * 1024 and sram.pipeline_stages == 3
    # one head's K^T at OPT's longest context fills the macros: 128 x 2048 x 2 B = 512 KiB
    assert sram.pim.capacity_bytes == 128 * 2048 * 2
    # the link is the four HBM3 stacks' interface: 4 x 1024 pins x 5.2 Gb/s / 8
    assert link.bandwidth_gbs == pytest.approx(4 * 1024 * 5.2 / 8)
    hpim = loader.load_hardware("hpim")
    if hpim.sram is not None:  # once the preset carries the sections, they are these
        assert (hpim.sram, hpim.link) == (sram, link)


def test_every_key_is_documented() -> None:
    doc = (ROOT / "docs" / "sram-engine.md").read_text()
    todo = [(SramConfig, "sram"), (LinkConfig, "link")]
    while todo:
        cls, prefix = todo.pop()
        for item in dataclasses.fields(cls):
            if dataclasses.is_dataclass(item.type):
                todo.append((item.type, f"{prefix}.{item.name}"))
            else:
                assert f"`{prefix}.{item.name}`" in doc, f"{prefix}.{item.name} is undocumented"


# ---------------------------------------------------------------------------------------
# The section readers inside the real loader (as the lead plugs them into SECTIONS).


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(loader.SECTIONS, "sram", (SramConfig, read_sram_section))
    monkeypatch.setitem(loader.SECTIONS, "link", (LinkConfig, read_link_section))


@pytest.mark.usefixtures("plugged")
def test_the_loader_reads_the_sections_through_extends(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text('extends = "hbm3-5.2gbps"\n' + preset_block())
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[sram.pim]\nmacros_per_group = 2\n')
    hw = loader.load_hardware(child)
    assert hw.sram.pim.macros == 32 and hw.sram.cores == 32 and hw.link.latency_ns == 30
    assert loader.load_hardware("hbm3-5.2gbps").sram is None  # no section: no subsystem
    # a bad value names the file that set it, and a relation the most derived of its keys
    child.write_text('extends = "base.toml"\n[sram.pim]\ngroups = 0\n')
    with pytest.raises(HpimError, match=f"^{re.escape(str(child))}: sram.pim.groups = 0"):
        loader.load_hardware(child)
    child.write_text('extends = "base.toml"\n[sram.vcu]\nlanes = 8\n')
    with pytest.raises(
        HpimError, match=f"^{re.escape(str(child))}: sram.vcu.elementwise_per_cycle = 64"
    ):
        loader.load_hardware(child)
    child.write_text('extends = "base.toml"\n[link]\nbandwith_gbs = 1\n')
    with pytest.raises(HpimError, match="unknown key link.bandwith_gbs"):
        loader.load_hardware(child)


# ---------------------------------------------------------------------------------------
# Random values: every table either parses or raises HpimError naming the key.

SCALARS = [
    ("sram", key)
    for key in ("cores", "clock_mhz", "pipeline_stages", "activation_memory_bytes", "kv_cache")
] + [
    (f"sram.{table}", key)
    for table in ("tcu", "vcu", "pim", "transpose", "noc")
    for key in tables()["sram"][table]
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(SCALARS),
    st.one_of(
        st.integers(-5, 70000), st.floats(allow_nan=True), st.text(max_size=4), st.booleans()
    ),
)
def test_random_values_parse_or_name_the_key(where: tuple[str, str], value) -> None:
    table, key = where
    data = copy.deepcopy(tables())
    section = data
    for part in table.split("."):
        section = section[part]
    section[key] = value
    try:
        parse_sram_section(data["sram"], "hw.toml")
    except HpimError as error:
        assert str(error).startswith("hw.toml: sram.")
        assert "Traceback" not in str(error)
