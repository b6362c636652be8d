"""`hpim run-isa FILE --hw PRESET|file.toml`: simulate an ISA program on the whole machine.

FILE is an MLIR module of `hbm_isa.stream`s and `sram_isa.stream`s (what `hpim compile`
writes; docs/scheduler.md) or `.hpimasm` assembly. The central scheduler runs both streams
concurrently (`hpim_ir.sim.scheduler`: the HBM-PIM stream on the fast engine, or
`--engine reference`; repeated sections unrolled, context-dependent sizes bound to
`--ctx N`) and this prints a summary, or with `--json` the whole result.

An HBM-PIM-only program reports what the HBM-PIM engine does (docs/hbm-engine.md):
`cycles` (to the completion of the last command), `ns`, `channel_cycles`, `commands` per
kind (controller-issued ACT/PRE/REF included, and broken out in `controller_commands`) and
`energy_pj`. A mixed program reports the machine: `ns`, `overlap_ns`, `energy_pj`, and per
subsystem (`hbm`, `sram`) its engine's result plus `machine` (busy, idle, overlap, per
channel / core busy cycles, energy over the step), and the tokens. `--trace-commands FILE`
writes the DRAM command trace as CSV (`-` for stdout); `--trace FILE` a Perfetto / Chrome
trace-event timeline (docs/scheduler.md).
"""

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the program: an MLIR module of ISA streams, or .hpimasm")
    parser.add_argument(
        "--hw", default="hpim", help="hardware preset name or .toml file (default: hpim)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--trace", metavar="FILE", help="write a Perfetto / Chrome trace-event timeline (JSON)"
    )
    parser.add_argument(
        "--trace-commands", metavar="FILE", help="write the DRAM command trace as CSV ('-': stdout)"
    )
    parser.add_argument(
        "--ctx",
        type=int,
        metavar="N",
        help="the context length that context-dependent sizes are bound to",
    )
    parser.add_argument(
        "--engine",
        choices=("fast", "reference"),
        default="fast",
        help="HBM-PIM engine: fast (default) or command by command (same results)",
    )


def run(args: argparse.Namespace) -> int:
    from hpim_ir.errors import HpimError
    from hpim_ir.hardware import load_hardware
    from hpim_ir.sim.hbm import write_trace_csv
    from hpim_ir.sim.program import read_program
    from hpim_ir.sim.scheduler import simulate_machine
    from hpim_ir.sim.trace_events import write_trace_events

    if args.json and args.trace_commands == "-":
        raise HpimError(
            "--json and --trace-commands - both write to stdout; write the trace to a file"
        )
    program = read_program(args.file)
    hw = load_hardware(args.hw)
    result = simulate_machine(
        program, hw, ctx=args.ctx, engine=args.engine, trace=args.trace_commands is not None
    )
    if args.trace_commands == "-":
        write_trace_csv(result.hbm.trace, sys.stdout)
    elif args.trace_commands is not None:
        try:
            with open(args.trace_commands, "w", encoding="utf-8") as stream:
                write_trace_csv(result.hbm.trace, stream)
        except OSError as error:
            raise HpimError(f"cannot write {args.trace_commands}: {error.strerror}") from None
    if args.trace is not None:
        write_trace_events(result, args.trace)
    report = result.as_dict() if program.has_sram else result.hbm.as_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.trace_commands != "-":
        print(machine_summary(result) if program.has_sram else summary(result.hbm, len(program.hbm)))
    return 0


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


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
    return _table([
        ("hardware", f"{result.hardware} ({len(channel_cycles)} channels, "
                     f"tCK {result.tck_ns:.3f} ns), {result.engine} engine"),
        ("instructions", f"{instructions:,}"),
        ("cycles", f"{result.cycles:,} ({result.ns:,.1f} ns)"),
        ("channels", f"{len(used)} busy, {min(used, default=0):,} to "
                     f"{max(used, default=0):,} cycles"),
        ("commands", commands or "none"),
        ("energy (uJ)", f"{energy['total'] / 1e6:,.3f}: {breakdown}"),
    ])


def machine_summary(result) -> str:
    """A short readable report of a `MachineResult` (a mixed program)."""
    step = result.step
    program = step.program
    hbm, sram = result.hbm_report, result.sram_report
    hw_sram = result.sram

    def subsystem(report, units: str, cycle_word: str = "cycles") -> str:
        used = sum(1 for busy in report.busy if busy)
        return (
            f"{report.cycles:,} {cycle_word} ({report.ns:,.1f} ns); busy {report.busy_cycles:,}"
            f" ({report.busy_ns:,.1f} ns), idle {report.idle_cycles:,}; {used} of "
            f"{len(report.busy)} {units} busy"
        )

    by = [side for side, _ in result.tokens.values()]
    energy = result.energy_pj
    return _table([
        ("hardware", f"{result.hardware}: HBM-PIM {len(hbm.busy)} channels (tCK "
                     f"{hbm.cycle_ns:.3f} ns, {result.hbm.engine} engine), SRAM-PIM "
                     f"{len(sram.busy)} cores ({1000 / sram.cycle_ns:,.0f} MHz)"),
        ("program", f"{len(program.sections)} section(s), {len(step.hbm.records):,} HBM-PIM + "
                    f"{len(step.sram.records):,} SRAM-PIM records unrolled, ctx {result.ctx}"),
        ("step", f"{result.ns:,.1f} ns"),
        ("HBM-PIM", subsystem(hbm, "channels")),
        ("SRAM-PIM", subsystem(sram, "cores")),
        ("overlap", f"{result.overlap_ns:,.1f} ns with both busy"),
        ("tokens", f"{len(by)}: {by.count('hbm')} raised by HBM-PIM, {by.count('sram')} by "
                   f"SRAM-PIM"),
        ("link (cycles)", f"to SRAM-PIM {hw_sram.link_busy['to_sram']:,}, to HBM-PIM "
                          f"{hw_sram.link_busy['to_hbm']:,}"),
        ("energy (uJ)", f"{energy['total'] / 1e6:,.3f}: HBM-PIM {energy['hbm'] / 1e6:,.3f}, "
                        f"SRAM-PIM {energy['sram'] / 1e6:,.3f}"),
    ])
