"""The pass-authoring tutorial (docs/pass-authoring.md) runs as written: its files are
extracted into a temporary package, registered from Python, installed through the entry
point, and its lit test passes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).parents[1] / "docs" / "pass-authoring.md"
LIT_CONFIG = Path(__file__).parent / "lit" / "lit.cfg.py"


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    blocks = re.findall(r"```\w+ file=(\S+)\n(.*?)```", TUTORIAL.read_text(), re.S)
    assert len(blocks) == 5, "the tutorial's file blocks changed: update this test"
    for name, body in blocks:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return tmp_path


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}
    )


def test_python_registration_runs(tutorial: Path) -> None:
    result = run([sys.executable, "register_in_python.py"], tutorial, PYTHONPATH=str(tutorial))
    assert result.returncode == 0, result.stderr
    assert "fixed = 400064" in result.stdout


def test_registered_pass_runs_in_hpim_opt(tutorial: Path) -> None:
    script = (
        "import sys\n"
        "from hpim_ir.opt import main\n"
        "from hpim_ir.universe import register_pass\n"
        "from my_hpim_ext.link_traffic import LinkTrafficPass\n"
        "register_pass(LinkTrafficPass)\n"
        "from hpim_ir import import_model\n"
        "open('m.mlir', 'w').write(str(import_model('opt-125m')))\n"
        "sys.exit(main(['m.mlir', '-p', 'convert-llm-to-pim{kv-cache=hbm},pim-link-traffic']))\n"
    )
    result = run([sys.executable, "-c", script], tutorial, PYTHONPATH=str(tutorial))
    assert result.returncode == 0, result.stderr
    assert "pim.link_bytes = {fixed = 363200 : i64, per_context = 36864 : i64}" in result.stdout


@pytest.mark.slow
def test_entry_point_and_lit_test(tutorial: Path) -> None:
    site = tutorial / "site"
    install = run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--ignore-installed", "--target", str(site), str(tutorial)],
        tutorial,
    )
    assert install.returncode == 0, install.stderr
    # The package is found only through the installed entry point (PYTHONPATH = site).
    (tutorial / "lit.cfg.py").write_text(LIT_CONFIG.read_text())
    lit = run(
        [sys.executable, "-c", "from lit.main import main; main()", "-v", "link-traffic.mlir"],
        tutorial,
        PYTHONPATH=str(site),
    )
    assert lit.returncode == 0, lit.stdout + lit.stderr
    assert "Passed: 1" in lit.stdout
