"""Speed of the HBM-PIM engines and of `hpim run-isa` (a benchmark: timings are reported here,
never asserted in tests).

Workload: one HBM3 stack (`hbm3-5.2gbps`), 16 channels x 4096 `hbm.mac_ab`, as a raw program
of 66,048 lines: each channel loads the 32 slots of its global buffer (`hbm.wr_gb`), then
MACs 32 columns of each of 128 rows, so every 32 MACs a row closes and the next opens; the
lines interleave the channels as a host's command stream would. Measured: device commands
per second of each engine (median of `--runs`), the same work as two macros, a model-sized
macro program (the `hpim` machine, 64 channels x 4096 rows x 32 columns), the raw program
with every channel on its own rows (so that no channel's result can be reused), a
normal-mode stream of the size of a KV cache (`hbm.read` of 64 rows of every bank on every
channel of the `hpim` machine, 268 MB), and the whole process `hpim run-isa FILE --hw
hbm3-5.2gbps` (median of `--runs` runs).

    python benchmarks/bench_hbm.py [--runs 7] [--output docs/results/hbm-bench.md]
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpim_ir.asm import read_asm
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import HbmOp, HbmProgram, simulate

CHANNELS, ROWS, COLUMNS = 16, 128, 32


def raw_program_text() -> str:
    lines = [f"hbm.wr_gb ch={ch} col={col}" for ch in range(CHANNELS) for col in range(COLUMNS)]
    lines += [
        f"hbm.mac_ab ch={ch} row={row} col={col}"
        for row in range(ROWS)
        for col in range(COLUMNS)
        for ch in range(CHANNELS)
    ]
    return "\n".join(lines) + "\n"


def macro_program(channels: int, rows: int) -> HbmProgram:
    return HbmProgram.from_rows([
        (HbmOp.LOAD_GB, 0, channels, -1, COLUMNS, 1, 1),
        (HbmOp.GEMV, 0, channels, 0, COLUMNS, rows, 2),
    ])


def stream_program(channels: int, rows: int) -> HbmProgram:
    return HbmProgram.from_rows([(HbmOp.READ, 0, channels, 0, COLUMNS, rows, 1)])


def median_seconds(work, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table_row(name: str, seconds: float, commands: int | None = None) -> str:
    if commands is None:
        return f"| {name} | {seconds * 1e3:,.1f} ms | | |"
    return f"| {name} | {seconds * 1e3:,.1f} ms | {commands:,} | {commands / seconds:,.0f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    args = parser.parse_args()

    stack = load_hardware("hbm3-5.2gbps")
    machine = load_hardware("hpim")
    text = raw_program_text()
    program = read_asm(text, "bench.hpimasm")
    # The same work with every channel on its own rows: no two channels alike, no memoization.
    distinct = program.records.copy()
    macs = distinct["op"] == HbmOp.MAC_AB
    distinct["row"][macs] += distinct["ch_lo"][macs] * ROWS
    distinct = HbmProgram(distinct)
    table = [
        "| measurement | time (median) | device commands | commands / s |",
        "|---|---|---|---|",
        table_row("`read_asm` of the 66,048 lines",
                  median_seconds(lambda: read_asm(text, "bench.hpimasm"), args.runs)),
    ]
    engine_runs = [
        ("fast engine, raw program", lambda: simulate(program, stack), args.runs),
        ("fast engine, raw program, every channel on other rows (nothing memoized)",
         lambda: simulate(distinct, stack), args.runs),
        ("fast engine, raw program, with trace",
         lambda: simulate(program, stack, trace=True), args.runs),
        ("reference engine, raw program",
         lambda: simulate(program, stack, engine="reference"), max(1, args.runs // 3)),
        ("fast engine, the same as `load_gb` + `gemv` macros",
         lambda: simulate(macro_program(CHANNELS, ROWS), stack), args.runs),
        ("fast engine, `hpim` machine: 64 channels x 4096 rows x 32 columns (macros)",
         lambda: simulate(macro_program(machine.hbm.total_channels, 4096), machine),
         args.runs),
        ("fast engine, `hpim` machine: `hbm.read` of 64 rows x 32 columns of every bank of "
         "64 channels", lambda: simulate(stream_program(machine.hbm.total_channels, 64), machine),
         args.runs),
        ("reference engine, the same read on one channel",
         lambda: simulate(stream_program(1, 64), machine, engine="reference"),
         max(1, args.runs // 3)),
    ]
    for name, work, runs in engine_runs:
        seconds = median_seconds(work, runs)
        table.append(table_row(name, seconds, sum(work().commands.values())))

    hpim = shutil.which("hpim", path=os.path.dirname(sys.executable)) or "hpim"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.hpimasm"
        path.write_text(text)
        command = [hpim, "run-isa", str(path), "--hw", "hbm3-5.2gbps", "--json"]
        subprocess.run(command, check=True, capture_output=True)  # warm the file cache
        process = median_seconds(
            lambda: subprocess.run(command, check=True, capture_output=True), args.runs
        )
    cycles = simulate(program, stack).cycles
    efficiency = []
    for hw in (stack, machine):
        result = simulate(stream_program(hw.hbm.total_channels, 64), hw)
        bursts = result.commands["RD"] + result.commands["RDA"]
        efficiency.append(
            f"`{hw.name}`: {bursts / (hw.hbm.total_channels * result.cycles):.3f} "
            f"({result.commands['REF_AB'] // hw.hbm.total_channels} refreshes per channel)"
        )
    report = "\n".join([
        "# HBM-PIM engine speed",
        "",
        "Made by `python benchmarks/bench_hbm.py"
        + (f" --runs {args.runs}" if args.runs != 7 else "") + "` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "The workload (the script's docstring): 16 channels x 4096 `hbm.mac_ab` with the "
        f"`hbm.wr_gb` that feed them, 66,048 lines, {cycles:,} cycles on `hbm3-5.2gbps`.",
        "",
        f"**Whole process, `hpim run-isa bench.hpimasm --hw hbm3-5.2gbps --json`: "
        f"{process:.3f} s** (median of {args.runs} runs; target < 1 s).",
        "",
        *table,
        "",
        "Bandwidth of `hbm.read` of 64 rows x 32 columns of every bank on every channel, in "
        "bursts per channel per cycle (peak 1: one 32 B burst per cycle on the column bus): "
        + "; ".join(efficiency) + ".",
        "",
    ])
    print(report)
    if args.output:
        Path(args.output).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
