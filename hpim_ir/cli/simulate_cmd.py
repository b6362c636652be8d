"""`hpim simulate MODEL`: a request (prefill + decode) on a machine, against baselines.

Compiles the decode step once (cached on disk), simulates it with the central scheduler at
the steps' context lengths, and prints a table (or `--json`): prefill, decode per token,
total, tokens/s, the time per part of the layer and per subsystem, utilization, energy, and
the speedup over each `--baseline`.
"""

import argparse
import json
import sys

from hpim_ir.cli.compile_cmd import add_fill_banks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name, config.json, or a folder holding one")
    parser.add_argument("--hw", default="hpim", help="hardware preset or TOML file (default: hpim)")
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens (default 256)")
    parser.add_argument("--generate", type=int, default=768, help="tokens generated (default 768)")
    parser.add_argument("--batch", type=int, default=1, help="sequences per batch (PIM designs: 1)")
    parser.add_argument(
        "--policy", help="partitioning policy (default: the hardware's `policy`, else hpim)"
    )
    parser.add_argument("--no-pipeline", action="store_true", help="no fine-grained pipeline")
    parser.add_argument("--kv-cache", choices=("sram", "hbm"), help="default: the hardware's")
    parser.add_argument(
        "--baseline", action="append", default=None, metavar="NAME",
        help="compare with a GPU baseline (a100, a100-eager, a TOML file) or another "
        "machine (a hardware preset such as ianus-like, or a hardware TOML file), simulated "
        "here with its own policy; repeatable (default: a100)",
    )
    parser.add_argument(
        "--prefill", choices=("gemm", "steps"), default="gemm",
        help="run the prompt as the compiled prefill (gemm: GEMMs on the SRAM-PIM TCUs, the "
        "paper's mapping; default) or token by token as decode steps (steps)",
    )
    parser.add_argument("--exact", action="store_true", help="simulate every decode step")
    parser.add_argument(
        "--samples", type=int, default=8,
        help="decode steps simulated when not --exact, interpolated between (default 8)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--trace", help="write a Perfetto trace of the last decode step here")
    parser.add_argument("--no-cache", action="store_true", help="recompile, ignore the cache")
    parser.add_argument(
        "--workers", type=int,
        help="processes that simulate steps at once (default: the cores available)",
    )
    add_fill_banks(parser)


def run(args: argparse.Namespace) -> int:
    from hpim_ir.errors import HpimError
    from hpim_ir.simulate import CompileOptions, available_cores, resolve_policy, simulate_request

    if args.batch != 1:
        raise HpimError(
            f"--batch {args.batch}: the PIM designs are simulated at batch 1 (the paper's "
            "setting); the GPU baselines alone model batches"
        )
    if args.samples < 2:
        raise HpimError(f"--samples must be at least 2, got {args.samples}")
    if args.workers is not None and args.workers < 1:
        raise HpimError(f"--workers must be at least 1, got {args.workers}")
    options = CompileOptions(
        model=args.model,
        hw=args.hw,
        policy=resolve_policy(args.hw, args.policy),
        pipeline=not args.no_pipeline,
        kv_cache=args.kv_cache,
        max_context=args.prompt + args.generate,
        fill_banks=args.fill_banks,
    )
    report = simulate_request(
        options,
        prompt=args.prompt,
        generate=args.generate,
        baselines=args.baseline or ["a100"],
        exact=args.exact,
        samples=args.samples,
        use_cache=not args.no_cache,
        trace=args.trace,
        show_progress=not args.json and sys.stderr.isatty(),
        prefill_mode=args.prefill,
        workers=args.workers or available_cores(),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_table(report)
    return 0


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = (
        f"{report.model} on {report.hw} ({report.policy}"
        f"{'' if report.pipeline else ', no pipeline'}): prompt {report.prompt} "
        f"({'GEMM prefill' if report.prefill_mode == 'gemm' else 'as decode steps'}), "
        f"generate {report.generate}"
    )
    summary = Table(title=title, show_header=True)
    summary.add_column("")
    summary.add_column(report.hw, justify="right")
    for baseline in report.baselines:
        summary.add_column(baseline["name"], justify="right")
        summary.add_column("speedup", justify="right")

    def row(label: str, key: str, fmt: str = "{:,.2f}") -> None:
        cells = [label, fmt.format(getattr(report, key))]
        for baseline in report.baselines:
            value = baseline[key]
            cells += [fmt.format(value), f"{value / getattr(report, key):.2f}x"
                      if key != "tokens_per_s" else f"{getattr(report, key) / value:.2f}x"]
        summary.add_row(*cells)

    row("prefill (ms)", "prefill_ms")
    row("decode per token (ms)", "decode_ms_per_token", "{:,.3f}")
    row("total (ms)", "total_ms")
    row("tokens/s", "tokens_per_s")
    console.print(summary)

    parts = Table(
        title="time by part of the layer (ms, whole request)",
        caption="share: each instant split over the parts in proportion to the units working "
        "for them (the shares sum to the phase); span: the time some unit works for the part "
        "(parts overlap)",
    )
    parts.add_column("part")
    columns = [("breakdown", "prefill"), ("breakdown", "decode"), ("spans", "decode")]
    for kind, phase in columns:
        parts.add_column(f"{phase} {'share' if kind == 'breakdown' else 'span'}", justify="right")
    for part in report.breakdown["prefill"]:
        parts.add_row(
            part, *(f"{getattr(report, kind)[phase][part]:,.2f}" for kind, phase in columns)
        )
    console.print(parts)

    machine = Table(title="decode: subsystems")
    machine.add_column("")
    machine.add_column("value", justify="right")
    for key, value in report.breakdown["subsystem"].items():
        machine.add_row(f"{key} (ms)", f"{value:,.2f}")
    for key, value in report.utilization.items():
        machine.add_row(key, f"{value:.1%}")
    machine.add_row("energy (J)", f"{report.energy_j:,.3f}")
    console.print(machine)
    note = "exact" if report.exact else f"{report.simulated_steps} steps simulated, interpolated"
    console.print(f"[dim]decode: {note}; compile {'cached' if report.cached else 'fresh'}[/dim]")
