"""Compile speed: the whole-process time of `hpim compile MODEL` and the time of each stage
of `hpim-lower` (its `--time-passes`), then of the prefill of a `--prompt`-token prompt
(`hpim compile MODEL --phase prefill --prompt N`), medians over repeated runs.

    python benchmarks/bench_compile.py [--model opt-30b] [--runs 5] [--prompt 256] [--out docs/results/compile-time.md]
"""

import argparse
import platform
import re
import statistics
from collections import Counter
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
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    walls, stages, decode = compile_runs([args.model], args.runs)
    prefill = ["--phase", "prefill", "--prompt", str(args.prompt)]
    prefill_walls, prefill_stages, prefill_text = compile_runs([args.model, *prefill], args.runs)
    ops = instructions(decode)
    prefill_ops = instructions(prefill_text)

    lines = [
        f"# Compile time: `hpim compile {args.model}`",
        "",
        f"Made by `python benchmarks/bench_compile.py --model {args.model} --runs {args.runs} "
        f"--prompt {args.prompt}` on "
        f"{platform.machine()}, Python {platform.python_version()}; medians of {args.runs} runs.",
        "",
        f"**Whole process: {statistics.median(walls):.2f} s** (target < 10 s). The program has "
        f"{len(ops)} ISA instructions (the layer section once, repeated).",
        "",
        "| stage | time (median) |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {statistics.median(ms):.1f} ms |" for name, ms in stages.items()]
    counts = Counter(line.split()[0] for line in prefill_ops)
    lines += [
        "",
        f"The prefill compiles separately, per prompt length (`hpim compile {args.model} --phase "
        f"prefill --prompt {args.prompt}`): **{statistics.median(prefill_walls):.2f} s** whole "
        f"process, `convert-pim-to-isa` {statistics.median(prefill_stages['convert-pim-to-isa']):.0f} "
        f"ms of it, and {len(prefill_ops):,} ISA instructions: every weight tile of the streamed "
        f"linears is its own group of instructions ({counts['hbm_isa.read']:,} `hbm_isa.read`s "
        f"with their signals and waits, {counts['sram_isa.gemm']:,} `gemm`s with their `load`s, "
        f"{counts['sram_isa.allgather']:,} all-gathers of the inputs), since a stream's sections "
        "repeat whole layers but have no loop over tiles. A tile loop inside a section (a repeat "
        "with a row stride per iteration, as the layer section has) would make it about a hundred "
        "times smaller. `hpim simulate` does not read the text back: its compile cache keeps the "
        "simulator's program (`hpim_ir.simulate.compiled_program`), which xDSL would take longer "
        "to parse than to compile.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def compile_runs(argv: list[str], runs: int) -> tuple[list[float], dict[str, list[float]], str]:
    """`runs` times `hpim compile ARGV --time-passes`: the wall times, each stage's times and
    the program's text."""
    walls: list[float] = []
    stages: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "program.mlir"
        for _ in range(runs):
            started = time.perf_counter()
            result = subprocess.run(
                [*HPIM, "compile", *argv, "--time-passes", "-o", str(output)],
                capture_output=True, text=True, check=True, cwd=scratch,
            )
            walls.append(time.perf_counter() - started)
            for name, ms in re.findall(r"^(\S+)\s+([0-9.]+) ms$", result.stderr, re.M):
                stages.setdefault(name, []).append(float(ms))
        return walls, stages, output.read_text()


def instructions(text: str) -> list[str]:
    """The ISA instructions of a program's text, one stripped line each."""
    return [
        line.strip() for line in text.splitlines()
        if line.strip().startswith(("hbm_isa.", "sram_isa.")) and "stream" not in line.split()[0]
    ]


if __name__ == "__main__":
    main()
