"""Compile speed: the whole-process time of `hpim compile MODEL` and the time of each stage
of `hpim-lower` (its `--time-passes`), medians over repeated runs.

    python benchmarks/bench_compile.py [--model opt-30b] [--runs 5] [--out docs/results/compile-time.md]
"""

import argparse
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HPIM = [sys.executable, "-m", "hpim_ir"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="opt-30b")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    walls: list[float] = []
    stages: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "program.mlir"
        for _ in range(args.runs):
            started = time.perf_counter()
            result = subprocess.run(
                [*HPIM, "compile", args.model, "--time-passes", "-o", str(output)],
                capture_output=True, text=True, check=True, cwd=scratch,
            )
            walls.append(time.perf_counter() - started)
            for name, ms in re.findall(r"^(\S+)\s+([0-9.]+) ms$", result.stderr, re.M):
                stages.setdefault(name, []).append(float(ms))
        ops = sum(1 for line in output.read_text().splitlines() if line.strip().startswith(("hbm_isa.", "sram_isa.")))

    lines = [
        f"# Compile time: `hpim compile {args.model}`",
        "",
        f"Made by `python benchmarks/bench_compile.py --model {args.model} --runs {args.runs}` on "
        f"{platform.machine()}, Python {platform.python_version()}; medians of {args.runs} runs.",
        "",
        f"**Whole process: {statistics.median(walls):.2f} s** (target < 10 s). The program has "
        f"{ops} ISA instructions (the layer section once, repeated).",
        "",
        "| stage | time (median) |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {statistics.median(ms):.1f} ms |" for name, ms in stages.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
