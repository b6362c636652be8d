"""The calibrated value of the `hpim` preset (nCCDAB, the all-bank MAC pacing): how it is
validated, what it implies physically, the fit that chooses it, and (slow) that it still
reproduces the calibration figure with today's simulator."""

import dataclasses
import math

import pytest

from hpim_ir.errors import HpimError
from hpim_ir.evaluation import GEMV_PARTS, PAPER, calibration_error, fit_mac_pacing
from hpim_ir.hardware import load_hardware


def test_only_the_mac_pacing_and_refresh_differ_from_the_hbm3_table() -> None:
    hpim = load_hardware("hpim").hbm.timing
    base = load_hardware("hbm3-5.2gbps").hbm.timing
    assert hpim == dataclasses.replace(base, nCCDAB=hpim.nCCDAB, nRFC=hpim.nRFC)
    assert hpim.nCCDAB > base.nCCDAB  # slower than AttAcc's power-constrained pacing


def test_calibrated_mac_power_stays_inside_a_stacks_read_power() -> None:
    # The preset's argument: all-bank MACs of a stack draw no more than the same stack
    # reading at its full external bandwidth. MAC power = channels x mac_ab / (nCCDAB tCK);
    # read power = external GB/s x rd energy per byte. At AttAcc's nCCDAB = 6 it would be
    # 16 x 8110.08 pJ / 4.615 ns = 28.1 W against 665.6 GB/s x 890.88 pJ / 32 B = 18.5 W.
    hbm = load_hardware("hpim").hbm
    mac_w = hbm.channels * hbm.energy.mac_ab / (hbm.timing.nCCDAB * hbm.tck_ns) * 1e-3
    read_w = hbm.peak_bandwidth_gbs / hbm.stacks * hbm.energy.rd / hbm.column_bytes * 1e-3
    assert read_w == pytest.approx(18.53, abs=0.01)
    assert mac_w < read_w
    assert hbm.channels * hbm.energy.mac_ab / (6 * hbm.tck_ns) * 1e-3 > read_w


def test_mac_pacing_below_the_column_spacing_is_rejected(tmp_path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text('extends = "hpim"\n[hbm.timing]\nnCCDAB = 3\n')
    with pytest.raises(HpimError) as error:
        load_hardware(path)
    assert str(error.value) == (
        f"{path}: hbm.timing.nCCDAB = 3: must be at least nCCDL = 4 (a MAC_AB reads a column "
        "in every bank group); given hbm.timing.nCCDL = 4"
    )


def test_fit_picks_the_value_closest_to_the_papers_gemv_parts() -> None:
    paper = PAPER["breakdown_hpim_ms"]
    # Parts scaled by 0.5, 0.97 and 1.2: log errors 0.69, 0.03, 0.18 -> 14 wins; attention
    # is not fitted, so a wildly wrong attention at 14 changes nothing.
    sweep = {
        10: {p: 0.5 * paper[p] for p in GEMV_PARTS},
        14: {**{p: 0.97 * paper[p] for p in GEMV_PARTS}, "attention": 100 * paper["attention"]},
        18: {p: 1.2 * paper[p] for p in GEMV_PARTS},
    }
    assert calibration_error(sweep[14]) == pytest.approx(-math.log(0.97))
    assert fit_mac_pacing(sweep) == 14
    # A tie goes to the smaller (faster, less constrained) value.
    tie = {12: {p: 0.9 * paper[p] for p in GEMV_PARTS}, 13: {p: paper[p] / 0.9 for p in GEMV_PARTS}}
    assert fit_mac_pacing(tie) == 12


@pytest.mark.slow
def test_the_preset_still_reproduces_the_calibration_figure() -> None:
    # The calibration's own tolerance: the sweep in docs/calibration.md fits the GEMV parts
    # to a few percent; a simulator change that moves them by more than 10% (rms log) must
    # trigger a re-calibration (benchmarks/calibrate_hpim.py).
    from hpim_ir.simulate import CompileOptions, simulate_request

    report = simulate_request(
        CompileOptions(model="opt-13b", max_context=1280), 256, 1024, baselines=[], use_cache=False
    )
    assert calibration_error(report.spans["decode"]) < 0.10
