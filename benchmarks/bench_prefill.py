"""The simulated prefill of each model: compiled fresh (no cache) and simulated by the
central scheduler, against the analytic roofline, with the wall time of both. With
`--units`, also where one layer's time goes: the prefill run with each chunk's layers cut to
three and to two (`with_layers`); the difference is one layer of every chunk, in which the
busiest core's TCU and transfer port and the link towards SRAM-PIM were busy so long.

    python benchmarks/bench_prefill.py [--prompt 256] [--units] [MODEL ...]

(default models: opt-6.7b opt-30b)
"""

import argparse
import time

from hpim_ir.frontend import load_config
from hpim_ir.hardware import load_hardware
from hpim_ir.sim.scheduler import simulate_machine
from hpim_ir.simulate import (
    CompileOptions,
    compiled_program,
    prefill_estimate,
    simulate_prefill,
    with_layers,
)


def layer_units(options: CompileOptions, prompt: int, hw) -> str:
    """One layer (of every chunk): its time and the busy time of the busiest core's TCU and
    transfer port and of the link towards SRAM-PIM, in us and as a share of the layer."""
    program, _ = compiled_program(options, "prefill", prompt)
    two, three = (simulate_machine(with_layers(program, n), hw, 0) for n in (2, 3))
    layer = three.ns - two.ns
    us = hw.sram.cycle_ns / 1e3

    def busy(name: str, cycles: float) -> str:
        return f"{name} {cycles * us:.1f} us ({cycles * us * 1e3 / layer:.0%})"

    def busiest(unit: str) -> int:
        pairs = zip(two.sram.unit_busy[unit], three.sram.unit_busy[unit], strict=True)
        return max(after - before for before, after in pairs)

    cores = [busy(unit, busiest(unit)) for unit in ("TCU", "TRANSFER")]
    link = three.sram.link_busy["to_sram"] - two.sram.link_busy["to_sram"]
    return f"a layer {layer / 1e3:.1f} us: " + ", ".join([*cores, busy("link to SRAM-PIM", link)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["opt-6.7b", "opt-30b"])
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--hw", default="hpim")
    parser.add_argument("--units", action="store_true", help="also one layer's busy units")
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
        if args.units:
            print("  " + layer_units(CompileOptions(model, args.hw), args.prompt, hw))


if __name__ == "__main__":
    main()
