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


def test_hpim_opt_verifies_dominance_after_the_passes(tmp_path, monkeypatch, capsys) -> None:
    # xDSL verifies after each pass but not that values are defined before their uses; a
    # pass that hoists an op above its operand's definition must fail in hpim-opt, naming
    # the op, rather than print a module no parser would accept.
    from dataclasses import dataclass

    from xdsl.passes import ModulePass

    from hpim_ir import universe
    from hpim_ir.opt import main as opt_main

    @dataclass(frozen=True)
    class HoistLastPass(ModulePass):
        name = "test-hoist-last"

        def apply(self, ctx, op) -> None:
            block = op.body.block.first_op.body.block  # the function's body
            last = block.last_op.prev_op
            last.detach()
            block.insert_op_before(last, block.first_op)

    monkeypatch.setitem(universe._REGISTERED.all_passes, HoistLastPass.name, lambda: HoistLastPass)
    source = tmp_path / "f.mlir"
    source.write_text(
        "func.func @f() -> i64 {\n  %a = arith.constant 1 : i64\n"
        "  %b = arith.addi %a, %a : i64\n  func.return %b : i64\n}\n"
    )
    assert opt_main([str(source), "-p", "test-hoist-last"]) == 1
    assert capsys.readouterr().err == (
        "hpim-opt: error: 'arith.addi': operand 0 is used before it is defined\n"
    )
    assert opt_main([str(source), "-p", "test-hoist-last", "--disable-verify"]) == 0
