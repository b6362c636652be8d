"""Speed of the central scheduler on a compiled decode step (a benchmark: timings are
reported here, never asserted in tests).

Workload: `hpim compile MODEL` (default OPT-30B on `hpim`, the KV cache where the hardware
keeps it: in HBM, read out per layer and streamed through the macros), one decode step at
each `--ctx`. Measured (median of `--runs`, after one warm-up): making the step (binding,
unrolling, renumbering), and the whole simulation (both engines, the scheduler, the
reports) in wall-clock and in CPU time (the process's: steadier on a shared machine); the
unrolled records and instructions, and the step's simulated time.

    python benchmarks/bench_scheduler.py [--model opt-30b] [--ctx 256 1024 2000] [--runs 3]
        [--profile]
"""

import argparse
import statistics
import time

from hpim_ir.hardware import load_hardware
from hpim_ir.sim.program import MachineProgram
from hpim_ir.sim.scheduler import simulate_machine


def compile_step(model: str, hw: str, kv_cache: str | None) -> MachineProgram:
    from xdsl.context import Context

    from hpim_ir import import_model
    from hpim_ir.passes.hpim_lower import HpimLowerPass

    module = import_model(model, phase="decode")
    HpimLowerPass(hw=hw, kv_cache=kv_cache).apply(Context(), module)
    return MachineProgram.from_module(module, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="opt-30b")
    parser.add_argument("--hw", default="hpim")
    parser.add_argument("--kv-cache", choices=("sram", "hbm"))
    parser.add_argument("--ctx", type=int, nargs="+", default=[256, 1024, 2000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile one run (cProfile)")
    args = parser.parse_args()
    hw = load_hardware(args.hw)
    started = time.perf_counter()
    program = compile_step(args.model, args.hw, args.kv_cache)
    print(f"{args.model} on {args.hw}: compiled in {time.perf_counter() - started:.2f} s")
    for ctx in args.ctx:
        step_times, run_times, cpu_times = [], [], []
        for _ in range(args.runs + 1):
            started = time.perf_counter()
            step = program.step(hw, ctx)
            step_times.append(time.perf_counter() - started)
            started, cpu = time.perf_counter(), time.process_time()
            result = simulate_machine(program, hw, ctx)
            run_times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu)
        instructions = sum(result.sram.instructions)
        print(
            f"ctx {ctx:>5}: {len(step.hbm.records):,} HBM-PIM + {len(step.sram.records):,} "
            f"SRAM-PIM records ({instructions:,} instructions); step made in "
            f"{statistics.median(step_times[1:]) * 1000:.1f} ms, simulated in "
            f"{statistics.median(run_times[1:]):.3f} s (CPU "
            f"{statistics.median(cpu_times[1:]):.3f} s); the step takes "
            f"{result.ns / 1e6:.3f} ms, overlap {result.overlap_ns / 1e6:.3f} ms"
        )
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(simulate_machine, program, hw, args.ctx[-1])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
