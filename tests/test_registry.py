"""The registry: every registered name is its object's own name, everything loads, and the
`xdsl.universe` entry point makes stock `xdsl-opt` see hpim's dialects."""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from hpim_ir.universe import DIALECTS, PASSES, HPIM_UNIVERSE, hpim_dialects, hpim_passes


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_dialect_name_matches_registry(name: str) -> None:
    assert hpim_dialects()[name]().name == name


@pytest.mark.parametrize("name", sorted(PASSES))
def test_pass_name_matches_registry(name: str) -> None:
    assert hpim_passes()[name]().name == name


def test_entry_point_is_the_hpim_universe() -> None:
    (point,) = [p for p in entry_points(group="xdsl.universe") if p.name == "hpim"]
    assert point.load() is HPIM_UNIVERSE
    assert set(HPIM_UNIVERSE.all_dialects) == set(DIALECTS)


def test_stock_xdsl_opt_parses_llm(tmp_path) -> None:
    source = "llm.weight @w : tensor<4x4xf16>\n"
    script = "import sys; from xdsl.tools.xdsl_opt import main; sys.argv = ['xdsl-opt']; main()"
    result = subprocess.run(
        [sys.executable, "-c", script], input=source, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "llm.weight @w : tensor<4x4xf16>" in result.stdout
