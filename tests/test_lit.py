"""Runs the lit + FileCheck suite under pytest: one pytest test per lit file.

Each lit file becomes a parametrized test, so a failure names the file and shows lit's output,
and CI's pytest summary counts the lit tests. The lint tests below fail on a lit file that
would check nothing and pass silently: one without a RUN line, or a CHECK line without its
colon.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

LIT_ROOT = Path(__file__).parent / "lit"
SUFFIXES = (".mlir", ".hpimasm", ".test")


def lit_files() -> list[Path]:
    return sorted(
        path
        for path in LIT_ROOT.rglob("*")
        if path.suffix in SUFFIXES and not {"Inputs", "Output"} & set(path.parts)
    )


@pytest.mark.parametrize(
    "path", lit_files(), ids=lambda p: str(p.relative_to(LIT_ROOT))
)
def test_lit(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from lit.main import main; main()", "-v", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed: 1" in result.stdout, result.stdout

CHECK_WITHOUT_COLON = re.compile(r"^\s*//\s*CHECK(-[A-Z]+)?\s+[^:\s]|^\s*#\s*CHECK(-[A-Z]+)?\s+[^:\s]")


def test_suite_is_not_empty() -> None:
    assert lit_files(), "no lit tests found under tests/lit"


def test_every_lit_file_has_a_run_line() -> None:
    missing = [str(p) for p in lit_files() if "RUN:" not in p.read_text()]
    assert not missing, f"lit files without a RUN: line: {missing}"


def test_every_check_line_has_its_colon() -> None:
    bad = [
        f"{path}:{number}: {line.strip()}"
        for path in lit_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CHECK_WITHOUT_COLON.match(line)
    ]
    assert not bad, "CHECK lines without a colon are ignored by FileCheck:\n" + "\n".join(bad)
