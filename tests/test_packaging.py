"""Packaging: the top-level folders are importable through the one root `hpim_ir`, in a regular
and in an editable install, and no generic top-level name (`sim`, `passes`, `dialects`) is
installed."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# Prints where each module lives and whether a generic top-level name leaked.
PROBE = """
import importlib, importlib.util, json
report = {}
for name in ("hpim_ir.dialects.llm", "hpim_ir.sim.hbm", "hpim_ir.passes", "hpim_ir.frontend"):
    report[name] = importlib.import_module(name).__file__
report["leaked"] = [n for n in ("sim", "passes", "dialects") if importlib.util.find_spec(n)]
print(json.dumps(report))
"""


def probe(cwd: Path, extra_path: Path | None = None) -> dict:
    import json
    import os

    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = config["package-dir"]
    listed = set(config["packages"])
    found = set()
    for package, folder in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]) if relative.parts else package)
    # Sub-packages of a mapped root that is itself a separate mapping are counted once.
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_installed_environment_imports_through_the_root(tmp_path: Path) -> None:
    report = probe(tmp_path)
    assert Path(report["hpim_ir.dialects.llm"]).parent.name == "dialects"
    assert Path(report["hpim_ir.sim.hbm"]).parts[-3:] == ("sim", "hbm", "__init__.py")
    assert report["leaked"] == []


def pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_regular_install_maps_folders_into_the_root(tmp_path: Path) -> None:
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(ROOT))
    (wheel,) = (tmp_path / "wheel").glob("hpim-*.whl")
    pip("install", "--no-deps", "--ignore-installed", "--target", str(tmp_path / "site"), str(wheel))
    site = tmp_path / "site"
    assert not (site / "sim").exists() and not (site / "dialects").exists()
    report = probe(tmp_path, extra_path=site)
    assert Path(report["hpim_ir.dialects.llm"]) == site / "hpim_ir" / "dialects" / "llm.py"
    assert Path(report["hpim_ir.sim.hbm"]) == site / "hpim_ir" / "sim" / "hbm" / "__init__.py"
    assert report["leaked"] == []


@pytest.mark.slow
def test_editable_install_maps_folders_into_the_root(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip would uninstall the environment's own hpim first.
    pip(
        "install", "--no-deps", "--no-build-isolation", "--ignore-installed",
        "--prefix", str(prefix), "-e", str(ROOT),
    )
    (site,) = prefix.glob("lib/python*/site-packages")
    # An editable install works through a .pth file, which only site directories process.
    script = f"import site; site.addsitedir({str(site)!r}); exec({PROBE!r})"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout)
    assert Path(report["hpim_ir.dialects.llm"]) == ROOT / "dialects" / "llm.py"
    assert Path(report["hpim_ir.sim.hbm"]) == ROOT / "sim" / "hbm" / "__init__.py"
    assert report["leaked"] == []
