"""Hardware descriptions: the presets' figures, validation messages, `extends`, and the loader's
behaviour on random (valid and invalid) overrides."""

import dataclasses
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpim_ir.errors import HpimError
from hpim_ir.hardware import Hardware, HbmConfig, HbmEnergy, HbmTiming, load_hardware, preset_names

GiB = 2**30
ROOT = Path(__file__).parents[1]


def write(directory: Path, text: str, name: str = "hw.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def override(directory: Path, body: str, base: str = "hbm3-5.2gbps") -> Path:
    """A file that extends `base` and overrides what `body` says."""
    return write(directory, f'extends = "{base}"\n{body}\n')


def error_of(path: Path) -> str:
    with pytest.raises(HpimError) as caught:
        load_hardware(path)
    return str(caught.value)


# ---------------------------------------------------------------------------------------
# The presets.


def test_the_presets_shipped() -> None:
    assert preset_names() == [
        "attacc-like",  # another design: an A100-class GPU + HBM3-PIM, tests/test_designs.py
        "cxl-pnm-like",  # another design: LPDDR5X timing, tests/test_designs.py
        "hbm3-5.2gbps",
        "hbm3-5.2gbps-npc",
        "hbm3-6.4gbps",
        "hbm3-6.4gbps-npc",
        "hpim",
        "ianus-like",  # another design: GDDR6-AiM timing, tests/test_designs.py
    ]


# The HBM3 PIM timing table of /work/shared/reference/hbm3-timing.md, copied by hand:
# nBL nCL nRCD nRP nRAS nRC nWR nCCDS nCCDL nCCDAB nCCDSB nRRDS nRRDL nFAW, tCK in ns.
REFERENCE_TABLE = {
    "hbm3-5.2gbps": ((2, 19, 19, 19, 45, 63, 21, 2, 4, 6, 6, 2, 4, 39), 0.769),
    "hbm3-6.4gbps": ((2, 23, 23, 23, 55, 77, 26, 2, 4, 7, 8, 2, 4, 48), 0.625),
}
TABLE_KEYS = "nBL nCL nRCD nRP nRAS nRC nWR nCCDS nCCDL nCCDAB nCCDSB nRRDS nRRDL nFAW".split()


@pytest.mark.parametrize("name", [name for name in preset_names() if not name.endswith("-like")])
def test_preset_timing_agrees_with_the_reference_table(name: str) -> None:
    base = name.removesuffix("-npc") if name != "hpim" else "hbm3-5.2gbps"
    values, tck = REFERENCE_TABLE[base]
    timing = load_hardware(name).hbm.timing
    expected = dict(zip(TABLE_KEYS, values))
    if name.endswith("-npc"):  # no power constraint: nCCDAB = nCCDSB = 4
        expected |= {"nCCDAB": 4, "nCCDSB": 4}
    if name == "hpim":  # its MAC pacing is calibrated (tests/test_calibration.py)
        expected["nCCDAB"] = timing.nCCDAB
    assert {key: getattr(timing, key) for key in TABLE_KEYS} == expected
    assert timing.tCK_ns == pytest.approx(tck, abs=5e-4)


@pytest.mark.parametrize(
    "name, rate, refi, rfc",
    [
        # nREFI = ceil(3900 ns x rate / 4): 3900 x 1.3 = 5070, 3900 x 1.6 = 6240 (exact).
        # nRFC at 8 Gb per channel, 350 ns: 350 x 1.3 = 455, 350 x 1.6 = 560 (exact);
        # hpim at 12 Gb per channel, 410 ns: 410 x 1.3 = 533. With float tCK,
        # 350 / (4 / 5.2) = 455.00000000000006 would round up to 456: the loader must not.
        ("hbm3-5.2gbps", 5.2, 5070, 455),
        ("hbm3-5.2gbps-npc", 5.2, 5070, 455),
        ("hbm3-6.4gbps", 6.4, 6240, 560),
        ("hbm3-6.4gbps-npc", 6.4, 6240, 560),
        ("hpim", 5.2, 5070, 533),
    ],
)
def test_preset_refresh_in_cycles(name: str, rate: float, refi: int, rfc: int) -> None:
    hbm = load_hardware(name).hbm
    assert hbm.data_rate_gbps == rate
    assert hbm.tck_ns == pytest.approx(4 / rate)
    assert (hbm.timing.nREFI, hbm.timing.nRFC) == (refi, rfc)


@pytest.mark.parametrize("name", [name for name in preset_names() if name.startswith("hbm3-")])
def test_hbm3_stack_figures(name: str) -> None:
    hbm = load_hardware(name).hbm
    # 16 channels x (2 pseudo-channels x 2 ranks x 4 bank groups x 4 banks = 64 banks)
    assert (hbm.total_channels, hbm.banks_per_channel, hbm.total_banks) == (16, 64, 1024)
    # 32 columns x 32 B = 1 KiB rows; 1024 banks x 16384 rows x 1 KiB = 2^10+14+10 = 16 GiB
    assert hbm.row_bytes == 1024
    assert hbm.capacity_bytes == 16 * GiB
    assert hbm.global_buffer_slots == 32
    # 32 pseudo-channels x 32 B per nBL = 2 cycles = 1024 pins x rate / 8 bits:
    # 665.6 GB/s at 5.2 Gb/s, 819.2 GB/s at 6.4 Gb/s.
    assert hbm.peak_bandwidth_gbs == pytest.approx(1024 * hbm.data_rate_gbps / 8)


@pytest.mark.parametrize(
    "name, gbs",
    [
        # 1024 banks x 32 B every nCCDAB cycles of 4 / rate ns = 8192 x rate / nCCDAB GB/s:
        ("hbm3-5.2gbps", 8192 * 5.2 / 6),  # 7099.7
        ("hbm3-5.2gbps-npc", 8192 * 5.2 / 4),  # 10649.6, 16x the external 665.6
        ("hbm3-6.4gbps", 8192 * 6.4 / 7),  # 7489.8
        ("hbm3-6.4gbps-npc", 8192 * 6.4 / 4),  # 13107.2
        ("hpim", 4 * 8192 * 5.2 / 15),  # four stacks, calibrated nCCDAB = 15: 11359.6
    ],
)
def test_peak_pim_figures(name: str, gbs: float) -> None:
    hbm = load_hardware(name).hbm
    assert hbm.peak_pim_bandwidth_gbs == pytest.approx(gbs)
    # a column of 32 B is 16 FP16 values, 16 multiply-accumulates = 32 FLOPs per 32 B
    assert hbm.peak_pim_gflops == pytest.approx(gbs)


def test_hpim_machine() -> None:
    hw = load_hardware("hpim")
    hbm = hw.hbm
    assert hw.name == "hpim"
    # The paper: 4 stacks x 8 dies x 24 Gb = 768 Gb = 96 GiB; per die 2 channels x 2
    # pseudo-channels x 8 bank groups x 4 banks = 128 banks, x 8 dies x 4 stacks = 4096 PUs.
    assert hbm.capacity_bytes == 4 * 8 * 24 * GiB // 8 == 96 * GiB
    assert hbm.total_banks == 4 * 8 * (2 * 2 * 8 * 4) == 4096
    assert (hbm.stacks, hbm.total_channels, hbm.banks_per_channel) == (4, 64, 64)
    assert hbm.pu_multipliers == 16
    # 2 x 4096 PUs x 16 multipliers every 15 x 4/5.2 ns (nCCDAB calibrated) = 11359.6 GFLOP/s
    assert hbm.peak_pim_gflops == pytest.approx(2 * 4096 * 16 / (15 * 4 / 5.2))


def test_npc_presets_differ_from_their_base_in_mac_pacing_only() -> None:
    for rate in ("5.2", "6.4"):
        base = load_hardware(f"hbm3-{rate}gbps").hbm
        npc = load_hardware(f"hbm3-{rate}gbps-npc").hbm
        assert npc == dataclasses.replace(
            base, timing=dataclasses.replace(base.timing, nCCDAB=4, nCCDSB=4)
        )


def test_hardware_is_frozen() -> None:
    hw = load_hardware("hbm3-5.2gbps")
    assert hw.sram is None and hw.link is None
    assert hw.source_path is not None and hw.source_path.name == "hbm3-5.2gbps.toml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.hbm.timing.nRCD = 1  # type: ignore[misc]


def test_every_schema_key_is_documented() -> None:
    doc = (ROOT / "docs" / "hardware.md").read_text()
    for cls in (HbmConfig, HbmTiming, HbmEnergy):
        for item in dataclasses.fields(cls):
            # a sub-table is documented by its heading, a key by its row
            nested = dataclasses.is_dataclass(item.type)
            shown = f"`[hbm.{item.name}]`" if nested else f"`{item.name}`"
            assert shown in doc, f"docs/hardware.md does not describe {item.name}"
    for name in preset_names():
        assert f"`{name}`" in doc


# ---------------------------------------------------------------------------------------
# Validation: every message names the key path and the bad value.


@pytest.mark.parametrize(
    "body, expected",
    [
        ("[hbm.timing]\nnRDC = 19", "unknown key hbm.timing.nRDC"),
        ("[hbm]\nstack = 2", "unknown key hbm.stack (did you mean 'stacks'?)"),
        ("[sram_pim]\ncores = 32", "unknown key sram_pim"),
        ("[hbm.timing]\ntCK_ns = 1.0", "unknown key hbm.timing.tCK_ns"),
        ('[hbm]\nrows = "many"', "hbm.rows = 'many': must be an integer"),
        ("[hbm]\nrows = 16384.0", "hbm.rows = 16384.0: must be an integer"),
        ("[hbm]\nranks = true", "hbm.ranks = True: must be an integer"),
        ("[hbm]\nstacks = 0", "hbm.stacks = 0: must be at least 1"),
        ("[hbm]\nbank_groups = -4", "hbm.bank_groups = -4: must be at least 1"),
        ("[hbm]\nchannels = 12", "hbm.channels = 12: must be a power of two"),
        ("[hbm]\ncolumns = 48", "hbm.columns = 48: must be a power of two"),
        ("[hbm]\ndata_rate_gbps = 0", "hbm.data_rate_gbps = 0: must be at least 0.1"),
        ("[hbm]\ndata_rate_gbps = inf", "hbm.data_rate_gbps = inf: must be a finite number"),
        ("[hbm.energy]\nmac_ab = -1.5", "hbm.energy.mac_ab = -1.5: must be at least 0"),
        ("[hbm.energy]\nrefresh = nan", "hbm.energy.refresh = nan: must be a finite number"),
        ("[hbm.timing]\nnCL = 0", "hbm.timing.nCL = 0: must be at least 1"),
        ("[hbm.timing]\ntRCD_ns = -2", "hbm.timing.tRCD_ns = -2: must be a positive number of ns"),
        (
            "[hbm.timing]\nnRFC = 400\ntRFC_ns = 350",
            "hbm.timing.nRFC and hbm.timing.tRFC_ns are both given",
        ),
        # 45 + 19 - 1 = 63 is the least nRC (ceil-rounding of tRC = tRAS + tRP)
        (
            "[hbm.timing]\nnRC = 62",
            "hbm.timing.nRC = 62: must be at least nRAS + nRP - 1 = 45 + 19 - 1 = 63",
        ),
        ("[hbm.timing]\nnRAS = 18", "hbm.timing.nRAS = 18: must be at least nRCD = 19"),
        ("[hbm.timing]\nnFAW = 1", "hbm.timing.nFAW = 1: must be at least nRRDS = 2"),
        ("[hbm.timing]\nnCCDAB = 3", "hbm.timing.nCCDAB = 3: must be at least nCCDL = 4"),
        ("[hbm.timing]\nnCCDS = 1", "hbm.timing.nCCDS = 1: must be at least nBL = 2"),
        ("[hbm.timing]\nnWTRL = 7", "hbm.timing.nWTRL = 7: must be at least nWTRS = 8"),
        ("[hbm.timing]\nnRFC = 62", "hbm.timing.nRFC = 62: must be at least nRC = 63"),
        # nREFI must exceed nRFC = ceil(350 x 5.2 / 4) = 455
        (
            "[hbm.timing]\nnREFI = 455",
            "hbm.timing.nREFI = 455: must be at least nRFC + 1 = 455 + 1 = 456",
        ),
        (
            "[hbm.timing]\ntRFC_ns = 4000",  # 4000 x 1.3 = 5200 cycles > nREFI = 5070
            "hbm.timing.tREFI_ns = 3900 (5070 cycles at 5.2 Gb/s): must be at least nRFC + 1"
            " = 5200 + 1 = 5201 (refresh must leave time between refreshes); given"
            " hbm.timing.tRFC_ns = 4000 (5200 cycles at 5.2 Gb/s)",
        ),
        ("[hbm]\npu_multipliers = 8", "hbm.pu_multipliers = 8: must equal column_bytes / 2 = 16"),
        (
            "[hbm.energy]\nrefresh = 9007199254740993",  # 2**53 + 1: FP64 would round it
            "hbm.energy.refresh = 9007199254740993: has no exact FP64 value",
        ),
        ('[hbm]\npu_accumulate = "fp8"', "hbm.pu_accumulate = 'fp8': must be one of 'fp32', 'fp16'"),
        (
            "[hbm]\nglobal_buffer_bytes = 1040",
            "hbm.global_buffer_bytes = 1040: must be a multiple of column_bytes = 32",
        ),
        (
            "[hbm]\nglobal_buffer_bytes = 512",
            "hbm.global_buffer_bytes = 512: must hold one row of input",
        ),
        ("hbm = 3", "hbm = 3: must be a table [hbm]"),
        ("[hbm]\ntiming = 3", "hbm.timing = 3: must be a table [hbm.timing]"),
        ("[hbm.rows]\nx = 1", "hbm.rows is a table; it must be a single value"),
        ("name = 3", "name = 3: must be a string"),
        (
            "[hbm\nrows = 3",
            "invalid TOML: Expected ']' at the end of a table declaration (at line 2, column 5)",
        ),
    ],
)
def test_bad_values_are_named(tmp_path: Path, body: str, expected: str) -> None:
    path = override(tmp_path, body)
    assert error_of(path).startswith(f"{path}: {expected}")


def preset_text(name: str) -> str:
    return (ROOT / "hpim_ir" / "hardware" / "presets" / f"{name}.toml").read_text()


@pytest.mark.parametrize(
    "line, expected",
    [
        ("nRCD = 19", "hbm.timing.nRCD is missing (give nRCD in cycles or tRCD_ns in ns)"),
        ("tREFI_ns = 3900", "hbm.timing.nREFI is missing (give nREFI in cycles or tREFI_ns in ns)"),
        ("rows = 16384", "hbm.rows is missing"),
        ("background_mw = 60.5", "hbm.energy.background_mw is missing"),
    ],
)
def test_missing_keys_are_named(tmp_path: Path, line: str, expected: str) -> None:
    text = preset_text("hbm3-5.2gbps")
    kept = [row for row in text.splitlines() if not row.startswith(line)]
    assert len(kept) == len(text.splitlines()) - 1
    path = write(tmp_path, "\n".join(kept))
    assert error_of(path) == f"{path}: {expected}"


def test_missing_tables_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'description = "no hbm"')
    assert error_of(path) == f"{path}: hbm is missing (a table [hbm])"
    path = write(tmp_path, preset_text("hbm3-5.2gbps").split("[hbm.energy]")[0])
    assert error_of(path) == f"{path}: hbm.energy is missing (a table [hbm.energy])"


def test_unknown_spec_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HpimError, match=r"unknown hardware 'hbm4': not a preset \(attacc-like, cxl-pnm-like, hbm3-5.2gbps, "):
        load_hardware("hbm4")
    missing = tmp_path / "none.toml"
    with pytest.raises(HpimError, match=f"^{re.escape(str(missing))}: hardware file not found$"):
        load_hardware(missing)


# ---------------------------------------------------------------------------------------
# extends.


def test_extends_overrides_one_value(tmp_path: Path) -> None:
    hw = load_hardware(override(tmp_path, '[hbm]\nrows = 32768\n[hbm.timing]\nnFAW = 40'))
    base = load_hardware("hbm3-5.2gbps")
    assert hw.hbm == dataclasses.replace(
        base.hbm, rows=32768, timing=dataclasses.replace(base.hbm.timing, nFAW=40)
    )
    assert hw.hbm.capacity_bytes == 2 * base.hbm.capacity_bytes
    # name and description belong to their own file
    assert (hw.name, hw.description) == ("hw", "")


def test_extends_a_relative_file_through_a_chain(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path, 'extends = "hbm3-6.4gbps-npc"\nname = "mine"\n[hbm]\nstacks = 2', "base.toml")
    text = 'extends = "../base.toml"\ndescription = "two stacks"\n[hbm.energy]\nwr_gb = 1.0'
    path = write(tmp_path / "sub", text)
    hw = load_hardware(path)
    npc = load_hardware("hbm3-6.4gbps-npc").hbm
    energy = dataclasses.replace(npc.energy, wr_gb=1.0)
    assert hw.hbm == dataclasses.replace(npc, stacks=2, energy=energy)
    assert (hw.name, hw.description, hw.source_path) == ("hw", "two stacks", path)


def test_extends_converts_inherited_ns_at_the_new_rate(tmp_path: Path) -> None:
    # the parent gives tREFI_ns = 3900 and tRFC_ns = 350; at 4.0 Gb/s, tCK = 1 ns:
    # nREFI = 3900, nRFC = 350.
    hbm = load_hardware(override(tmp_path, "[hbm]\ndata_rate_gbps = 4.0")).hbm
    assert (hbm.tck_ns, hbm.timing.nREFI, hbm.timing.nRFC) == (1.0, 3900, 350)


def test_a_child_may_switch_a_timing_between_cycles_and_ns(tmp_path: Path) -> None:
    # parent: tRFC_ns = 350; the child's nRFC replaces it, and its tRCD_ns replaces nRCD = 19:
    # ceil(20 ns x 5.2 / 4) = ceil(26) = 26, ceil(20.1 x 1.3) = ceil(26.13) = 27.
    hbm = load_hardware(override(tmp_path, "[hbm.timing]\nnRFC = 500\ntRCD_ns = 20")).hbm
    assert (hbm.timing.nRFC, hbm.timing.nRCD) == (500, 26)
    hbm = load_hardware(override(tmp_path, "[hbm.timing]\ntRCD_ns = 20.1")).hbm
    assert hbm.timing.nRCD == 27


def test_extends_errors(tmp_path: Path) -> None:
    path = override(tmp_path, "", base="hbm9")
    assert error_of(path).startswith(f"{path}: extends = 'hbm9': unknown hardware 'hbm9'")
    a = write(tmp_path, 'extends = "b.toml"', "a.toml")
    write(tmp_path, 'extends = "a.toml"', "b.toml")
    b = re.escape(str(tmp_path / "b.toml"))
    cycle = r".*a\.toml -> .*b\.toml -> .*a\.toml"
    assert re.fullmatch(rf"{b}: extends = 'a.toml' makes a cycle: {cycle}", error_of(a))


def test_a_message_names_the_file_that_set_the_key(tmp_path: Path) -> None:
    parent = write(tmp_path, 'extends = "hbm3-5.2gbps"\n[hbm]\nranks = 0', "parent.toml")
    child = write(tmp_path, 'extends = "parent.toml"\n[hbm]\nrows = 100', "child.toml")
    assert error_of(child) == f"{parent}: hbm.ranks = 0: must be at least 1 (count)"
    # a failed relation names the most derived file among the keys involved
    child = write(tmp_path, 'extends = "hbm3-5.2gbps"\n[hbm.timing]\nnRCD = 50', "child.toml")
    assert error_of(child).startswith(f"{child}: hbm.timing.nRAS = 45: must be at least nRCD = 50")


# ---------------------------------------------------------------------------------------
# Properties over random overrides.

# Every example rewrites the same file in tmp_path, so the fixture's scope does not matter.
PROPERTY = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def toml_value(value: object) -> str:
    """A TOML literal for the values the strategies below make."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    return str(value)


def toml_file(overrides: dict[str, dict[str, object]]) -> str:
    lines = ['extends = "hbm3-5.2gbps"']
    for table, values in overrides.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@st.composite
def valid_overrides(draw: st.DrawFn) -> dict[str, dict[str, object]]:
    """A consistent machine: organization from the allowed sets, timings that satisfy every
    relation the loader checks."""
    power = lambda low, high: st.sampled_from([2**k for k in range(low, high + 1)])  # noqa: E731
    column_bytes = draw(power(1, 7))
    columns = draw(power(0, 8))
    hbm = {
        "stacks": draw(st.integers(1, 8)),
        "channels": draw(power(0, 5)),
        "pseudo_channels": draw(power(0, 2)),
        "ranks": draw(st.integers(1, 4)),
        "bank_groups": draw(power(0, 3)),
        "banks_per_group": draw(power(0, 3)),
        "rows": draw(st.integers(1, 1 << 17)),
        "columns": columns,
        "column_bytes": column_bytes,
        "pu_multipliers": column_bytes // 2,
        "pu_accumulate": draw(st.sampled_from(["fp32", "fp16"])),
        "global_buffer_bytes": columns * column_bytes * draw(st.integers(1, 4)),
        "data_rate_gbps": draw(st.floats(0.5, 12.0).map(lambda rate: round(rate, 2))),
    }
    small = st.integers(1, 40)
    nBL = draw(small)
    nCCDS = nBL + draw(st.integers(0, 4))
    nCCDL = nCCDS + draw(st.integers(0, 4))
    nRCD = draw(small)
    nRAS = nRCD + draw(st.integers(0, 40))
    nRP = draw(small)
    nRC = nRAS + nRP - 1 + draw(st.integers(0, 10))
    nRRDS = draw(small)
    nRFC = nRC + draw(st.integers(0, 500))
    nWTRS = draw(small)
    timing = {
        "nBL": nBL, "nCL": draw(small), "nCWL": draw(small), "nRCD": nRCD, "nRP": nRP,
        "nRAS": nRAS, "nRC": nRC, "nWR": draw(small), "nRTP": draw(small),
        "nCCDS": nCCDS, "nCCDL": nCCDL,
        "nCCDAB": nCCDL + draw(st.integers(0, 8)), "nCCDSB": nCCDL + draw(st.integers(0, 8)),
        "nRRDS": nRRDS, "nRRDL": nRRDS + draw(st.integers(0, 4)),
        "nFAW": nRRDS + draw(st.integers(0, 60)),
        "nWTRS": nWTRS, "nWTRL": nWTRS + draw(st.integers(0, 6)), "nRTW": draw(small),
        "nREFI": nRFC + 1 + draw(st.integers(0, 10000)), "nRFC": nRFC,
    }  # fmt: skip
    energy = {
        field.name: draw(st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6))
        for field in dataclasses.fields(HbmEnergy)
    }
    # nREFI and nRFC in cycles replace the parent's tREFI_ns and tRFC_ns.
    return {"hbm": hbm, "hbm.timing": timing, "hbm.energy": energy}


@settings(max_examples=150, **PROPERTY)
@given(overrides=valid_overrides())
def test_random_valid_overrides_load(
    tmp_path: Path, overrides: dict[str, dict[str, object]]
) -> None:
    hbm = load_hardware(write(tmp_path, toml_file(overrides))).hbm
    for key, value in overrides["hbm"].items():
        assert getattr(hbm, key) == value
    for key, value in overrides["hbm.timing"].items():
        assert getattr(hbm.timing, key) == value
    for key, value in overrides["hbm.energy"].items():
        assert getattr(hbm.energy, key) == value
    assert hbm.capacity_bytes == (
        hbm.stacks * hbm.channels * hbm.pseudo_channels * hbm.ranks * hbm.bank_groups
        * hbm.banks_per_group * hbm.rows * hbm.columns * hbm.column_bytes
    )  # fmt: skip


@settings(max_examples=100, **PROPERTY)
@given(ns=st.floats(0.01, 1e5), rate=st.floats(0.1, 20.0).map(lambda rate: round(rate, 3)))
def test_ns_timings_round_up_to_whole_cycles(tmp_path: Path, ns: float, rate: float) -> None:
    # refresh in cycles, so that only tWR_ns depends on the rate
    timing = f"nREFI = 5070\nnRFC = 455\ntWR_ns = {ns!r}"
    path = override(tmp_path, f"[hbm]\ndata_rate_gbps = {rate!r}\n[hbm.timing]\n{timing}")
    cycles = load_hardware(path).hbm.timing.nWR
    # the least whole number of cycles of tCK = 4 / rate ns that covers ns, in exact arithmetic
    tck = 4 / Fraction(str(rate))
    assert cycles * tck >= Fraction(str(ns)) > (cycles - 1) * tck


# Characters a TOML basic string may hold once json.dumps has escaped it.
TEXT = st.characters(blacklist_categories=("Cs", "Cc"))
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, -1, 2**31, 1 << 40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(TEXT, max_size=8),
    st.lists(st.integers(-5, 5), max_size=3),
)
CYCLE_KEYS = [f.name for f in dataclasses.fields(HbmTiming) if f.name != "tCK_ns"]
# The keys each table accepts; tCK_ns is derived from data_rate_gbps, not a key.
ACCEPTED = {
    "hbm": [f.name for f in dataclasses.fields(HbmConfig) if f.name not in ("timing", "energy")],
    "hbm.timing": [*CYCLE_KEYS, *(f"t{name[1:]}_ns" for name in CYCLE_KEYS)],
    "hbm.energy": [f.name for f in dataclasses.fields(HbmEnergy)],
}
ANY_KEY = st.from_regex(r"[a-zA-Z][a-zA-Z_]{0,8}", fullmatch=True) | st.just("tCK_ns")
KEYS = st.sampled_from(sorted(ACCEPTED)).flatmap(
    lambda table: st.tuples(st.just(table), st.sampled_from(ACCEPTED[table]) | ANY_KEY)
)


@settings(max_examples=300, **PROPERTY)
@given(changes=st.lists(st.tuples(KEYS, SCALARS), min_size=1, max_size=4))
def test_random_overrides_load_or_raise_hpim_error(
    tmp_path: Path, changes: list[tuple[tuple[str, str], object]]
) -> None:
    overrides: dict[str, dict[str, object]] = {}
    for (table, key), value in changes:
        overrides.setdefault(table, {})[key] = value
    path = write(tmp_path, toml_file(overrides))
    try:
        hw = load_hardware(path)
    except HpimError as error:
        assert str(error).startswith(f"{path}: ")
        return
    # It loaded, so every override was a known key and is what the machine now has.
    assert isinstance(hw, Hardware)
    sections = {"hbm": hw.hbm, "hbm.timing": hw.hbm.timing, "hbm.energy": hw.hbm.energy}
    for table, values in overrides.items():
        for key, value in values.items():
            assert key in ACCEPTED[table]
            if key.endswith("_ns"):  # converted to whole cycles, rounded up
                cycles = getattr(sections[table], f"n{key[1:-3]}")
                tck = 4 / Fraction(str(hw.hbm.data_rate_gbps))
                assert cycles * tck >= Fraction(str(value)) > (cycles - 1) * tck
            else:
                assert getattr(sections[table], key) == value


@settings(max_examples=200, **PROPERTY)
@given(
    key=st.sampled_from([(t, k) for t in ACCEPTED for k in ACCEPTED[t] if not k.endswith("_ns")]),
    value=st.one_of(
        st.integers(-(2**40), 0),
        st.floats(allow_nan=True).filter(lambda v: not math.isfinite(v)),
        st.text(TEXT, max_size=5),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_random_invalid_values_raise_naming_the_key(
    tmp_path: Path, key: tuple[str, str], value: object
) -> None:
    table, name = key
    # energies may be 0: move a 0 to -1 so that every drawn value is invalid for every key
    if value == 0 and not isinstance(value, bool):
        value = -1
    path = write(tmp_path, toml_file({table: {name: value}}))
    message = error_of(path)
    assert message.startswith(f"{path}: {table}.{name} = ")


def test_a_rate_change_that_breaks_an_inherited_ns_timing_blames_the_rate(tmp_path: Path) -> None:
    # at 0.5 Gb/s (tCK = 8 ns) the inherited tRFC_ns = 350 is ceil(43.75) = 44 cycles, less
    # than the inherited nRC = 63 cycles: the child's rate is what broke it.
    path = override(tmp_path, "[hbm]\ndata_rate_gbps = 0.5")
    assert error_of(path) == (
        f"{path}: hbm.timing.tRFC_ns = 350 (44 cycles at 0.5 Gb/s): must be at least nRC = 63"
        " (a refresh activates and precharges rows of every bank); given hbm.timing.nRC = 63"
    )


def test_the_documented_example_loads(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "hardware.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert example is not None
    hbm = load_hardware(write(tmp_path, example[1], "my-machine.toml")).hbm
    # twice the rows of hbm3-5.2gbps: 32 GiB; 4 rows per bank per REFab
    assert (hbm.capacity_bytes, hbm.timing.nCCDAB) == (32 * GiB, 5)
    assert hbm.energy.refresh == pytest.approx(64 * 4 * 8192 * 0.11)
