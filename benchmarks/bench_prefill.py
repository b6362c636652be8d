"""The simulated prefill of each model: compiled fresh (no cache) and simulated by the
central scheduler, against the analytic roofline, with the wall time of both.

    python benchmarks/bench_prefill.py [--prompt 256] [MODEL ...]   (default: opt-6.7b opt-30b)
"""

import argparse
import time

from hpim_ir.frontend import load_config
from hpim_ir.hardware import load_hardware
from hpim_ir.simulate import CompileOptions, prefill_estimate, simulate_prefill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["opt-6.7b", "opt-30b"])
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--hw", default="hpim")
    args = parser.parse_args()
    hw = load_hardware(args.hw)
    for model in args.models:
        started = time.perf_counter()
        measure = simulate_prefill(CompileOptions(model, args.hw), args.prompt, hw, use_cache=False).measure
        wall = time.perf_counter() - started
        roofline = prefill_estimate(load_config(model), hw, args.prompt).ms
        parts = ", ".join(f"{part} {ns / 1e6:.2f}" for part, ns in measure.parts_ns.items())
        print(
            f"{model} prompt {args.prompt}: {measure.ns / 1e6:.2f} ms (shares: {parts}); "
            f"roofline {roofline:.2f} ms; compiled and simulated in {wall:.1f} s"
        )


if __name__ == "__main__":
    main()
