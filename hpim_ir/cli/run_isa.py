"""`hpim run-isa FILE --hw PRESET|file.toml`: simulate an ISA program at DRAM-command level.

Reads an `.hpimasm` program, simulates it on the hardware's HBM-PIM subsystem (the fast
engine, or `--engine reference`) and prints a summary, or with `--json` the whole result:
`cycles` (to the completion of the last command), `ns`, `channel_cycles`, `commands` per
kind (controller-issued ACT/PRE/REF included, and broken out in `controller_commands`) and
`energy_pj`. `--trace-commands FILE` writes the command trace as CSV (`-` for stdout).
The model is documented in docs/hbm-engine.md.
"""

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the .hpimasm program")
    parser.add_argument(
        "--hw", default="hpim", help="hardware preset name or .toml file (default: hpim)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--trace-commands", metavar="FILE", help="write the DRAM command trace as CSV ('-': stdout)"
    )
    parser.add_argument(
        "--engine",
        choices=("fast", "reference"),
        default="fast",
        help="fast (default) or the command-by-command reference engine (same results)",
    )


def run(args: argparse.Namespace) -> int:
    from hpim_ir.asm import read_asm
    from hpim_ir.errors import HpimError
    from hpim_ir.hardware import load_hardware
    from hpim_ir.sim.hbm import simulate, write_trace_csv

    try:
        with open(args.file, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise HpimError(f"cannot read {args.file}: {reason}") from None
    hw = load_hardware(args.hw)
    program = read_asm(text, args.file)
    result = simulate(
        program,
        hw,
        engine=args.engine,
        trace=args.trace_commands is not None,
        source=args.file,
    )
    if args.trace_commands == "-":
        write_trace_csv(result.trace, sys.stdout)
    elif args.trace_commands is not None:
        try:
            with open(args.trace_commands, "w", encoding="utf-8") as stream:
                write_trace_csv(result.trace, stream)
        except OSError as error:
            raise HpimError(f"cannot write {args.trace_commands}: {error.strerror}") from None
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    elif args.trace_commands != "-":
        print(summary(result, len(program)))
    return 0


def summary(result, instructions: int) -> str:
    """A short readable report of an `HbmResult`."""
    channel_cycles = result.channel_cycles
    used = [cycles for cycles in channel_cycles if cycles > 0]
    commands = ", ".join(
        f"{name} {count:,}"
        + (f" ({result.controller_commands[name]:,} by controller)"
           if result.controller_commands.get(name) else "")
        for name, count in result.commands.items()
        if count
    )
    energy = result.energy_pj
    breakdown = ", ".join(
        f"{name} {pj / 1e6:,.3f}" for name, pj in energy.items() if name != "total" and pj
    )
    rows = [
        ("hardware", f"{result.hardware} ({len(channel_cycles)} channels, "
                     f"tCK {result.tck_ns:.3f} ns), {result.engine} engine"),
        ("instructions", f"{instructions:,}"),
        ("cycles", f"{result.cycles:,} ({result.ns:,.1f} ns)"),
        ("channels", f"{len(used)} busy, {min(used, default=0):,} to "
                     f"{max(used, default=0):,} cycles"),
        ("commands", commands or "none"),
        ("energy (uJ)", f"{energy['total'] / 1e6:,.3f}: {breakdown}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
