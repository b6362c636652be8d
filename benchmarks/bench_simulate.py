"""Simulation speed of `hpim simulate`: DRAM commands and simulated cycles per wall second,
seconds per simulated decode step and per generated token, and the whole process.

One decode step of the compiled program is simulated `--runs` times at the middle context of
the request (the central scheduler with the fast HBM engine, as `hpim simulate` runs it);
the figures are medians. The whole process is `hpim simulate MODEL --workers N` in its own
process (N: `--workers`, by default the cores available, as `hpim simulate` has it), once
with an empty compile cache and `--runs - 1` times with it warm.

    python benchmarks/bench_simulate.py [--model opt-30b] [--prompt 256] [--generate 768] [--runs 5] [--workers N] [--out FILE]
"""

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpim_ir.sim.scheduler import simulate_machine

from hpim_ir.hardware import load_hardware
from hpim_ir.simulate import CompileOptions, available_cores, compiled_program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="opt-30b")
    parser.add_argument("--hw", default="hpim")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--generate", type=int, default=768)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    hw = load_hardware(args.hw)
    options = CompileOptions(model=args.model, hw=args.hw, max_context=args.prompt + args.generate)
    program, _ = compiled_program(options, use_cache=False)
    context = args.prompt + args.generate // 2
    walls, cpus = [], []
    for _ in range(args.runs):
        started, cpu = time.perf_counter(), time.process_time()
        result = simulate_machine(program, hw, context)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    step_s, step_cpu = statistics.median(walls), statistics.median(cpus)
    commands = sum(result.hbm.commands.values())
    hbm_cycles = result.hbm.cycles
    sram_cycles = result.sram.cycles if result.sram is not None else 0

    whole, whole_cpu = [], []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(args.runs):
            started, cpu = time.perf_counter(), _children_cpu()
            subprocess.run(
                [sys.executable, "-m", "hpim_ir", "simulate", args.model, "--hw", args.hw,
                 "--prompt", str(args.prompt), "--generate", str(args.generate), "--json",
                 "--workers", str(args.workers)],
                check=True, capture_output=True, env={**os.environ, "HPIM_CACHE_DIR": cache},
            )
            whole.append(time.perf_counter() - started)
            whole_cpu.append(_children_cpu() - cpu)
    cold, warm = whole[0], statistics.median(whole[1:]) if len(whole) > 1 else float("nan")
    warm_cpu = statistics.median(whole_cpu[1:]) if len(whole) > 1 else float("nan")
    samples = 8  # `hpim simulate`'s default --samples

    rows = [
        ("simulated decode step (median)", f"{step_s:.3f} s wall, {step_cpu:.3f} s CPU"),
        ("DRAM commands per step (all channels)", f"{commands:,}"),
        ("DRAM commands per wall second", f"{commands / step_s:,.0f}"),
        ("HBM command-clock cycles per step", f"{hbm_cycles:,} ({result.hbm.ns / 1e6:.3f} ms)"),
        ("HBM cycles per wall second", f"{hbm_cycles / step_s:,.0f}"),
        ("SRAM-PIM core cycles per step", f"{sram_cycles:,}"),
        ("SRAM-PIM cycles per wall second", f"{sram_cycles / step_s:,.0f}"),
        ("seconds per generated token, --exact (one step each)", f"{step_s:.3f} s"),
        (f"seconds per generated token, default ({samples} steps for {args.generate})",
         f"{step_s * samples / args.generate:.4f} s"),
        (f"whole process, {args.workers} workers, cold compile cache",
         f"{cold:.1f} s wall, {whole_cpu[0]:.1f} s CPU"),
        (f"whole process, {args.workers} workers, warm cache (median of {len(whole) - 1})",
         f"{warm:.1f} s wall, {warm_cpu:.1f} s CPU"),
    ]
    lines = [
        f"# Simulation speed: `hpim simulate {args.model}`",
        "",
        (f"Made by `python benchmarks/bench_simulate.py --model {args.model} --prompt {args.prompt} "
         f"--generate {args.generate} --runs {args.runs}` on {platform.machine()} "
         f"({os.cpu_count()} cores), Python {platform.python_version()}, hardware `{args.hw}`. "
         f"One decode step at context {context}, central scheduler with the fast HBM engine; "
         f"medians of {args.runs} runs. Rates are per wall second; CPU seconds beside the "
         f"wall ones show how much of the wall time a shared machine took away (load average "
         f"{os.getloadavg()[0]:.1f} at the end); the whole process's are those of all its "
         f"worker processes together."),
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
