"""`hpim compile MODEL --hw PRESET`: a model through the whole compiler (`hpim-lower`) to the
two ISA streams, printed as MLIR or as `.hpimasm` assembly: a decode step, or with
`--phase prefill --prompt K` the prefill of a K-token prompt.

The module stays in memory from import to print: no stage prints and re-parses the IR.
`--time-passes` reports each stage of `hpim-lower` on stderr.
"""

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name, config.json, or a folder holding one")
    parser.add_argument("--hw", default="hpim", help="hardware preset or TOML file (default: hpim)")
    parser.add_argument(
        "--policy", help="partitioning policy (default: the hardware's `policy`, else hpim)"
    )
    parser.add_argument(
        "--no-pipeline", action="store_true", help="send K and V whole (no fine-grained pipeline)"
    )
    parser.add_argument("--granularity", choices=("tile", "head"), default="tile")
    parser.add_argument(
        "--kv-cache", choices=("sram", "hbm"), help="where the KV cache lives (default: the hardware's)"
    )
    parser.add_argument(
        "--max-context", type=int, default=0,
        help="longest context an SRAM-resident KV cache must hold (default: the model's)",
    )
    parser.add_argument(
        "--phase", choices=("decode", "prefill"), default="decode",
        help="compile a decode step (default) or the prefill of --prompt tokens",
    )
    parser.add_argument(
        "--prompt", type=int, default=256, help="prompt tokens of a prefill (default 256)"
    )
    parser.add_argument("-o", "--output", help="write the program here instead of stdout")
    parser.add_argument("--emit", choices=("mlir", "asm"), default="mlir")
    parser.add_argument("--time-passes", action="store_true", help="time each compiler stage")
    add_fill_banks(parser)


def add_fill_banks(parser: argparse.ArgumentParser) -> None:
    """`--fill-banks` (`hpim compile`, `simulate`, `run`): `pim-tile-hbm{fill}`."""
    from hpim_ir.passes.pim_tile_hbm import FILL_BANKS

    parser.add_argument(
        "--fill-banks", choices=FILL_BANKS, default=FILL_BANKS[0],
        help="which Q/K/V GEMVs put their heads on as few HBM-PIM channels as fill the banks: "
        "all (default), gqa (grouped-query attention's K and V only), none (the paper's spread)",
    )


def lower_pass(args: argparse.Namespace):
    from hpim_ir.passes.hpim_lower import HpimLowerPass
    from hpim_ir.simulate import resolve_policy

    return HpimLowerPass(
        hw=args.hw,
        policy=resolve_policy(args.hw, args.policy),
        pipeline=not args.no_pipeline,
        granularity=args.granularity,
        kv_cache=args.kv_cache,
        max_context=args.max_context,
        fill_banks=args.fill_banks,
    )


def run(args: argparse.Namespace) -> int:
    from xdsl.context import Context
    from xdsl.printer import Printer

    from hpim_ir import import_model
    from hpim_ir.errors import write_text

    started = time.perf_counter()
    module = import_model(args.model, phase=args.phase, prompt=args.prompt)
    timings = [("import", time.perf_counter() - started)]
    ctx = Context()
    for stage in lower_pass(args).stages(args.phase):
        started = time.perf_counter()
        stage.apply(ctx, module)
        timings.append((stage.name, time.perf_counter() - started))
    if args.time_passes:
        for name, seconds in timings:
            print(f"{name:<22} {seconds * 1000:9.1f} ms", file=sys.stderr)
    if args.emit == "asm":
        from hpim_ir.asm import module_to_asm

        text = module_to_asm(module)
    else:
        import io

        stream = io.StringIO()
        Printer(stream=stream).print_op(module)
        text = stream.getvalue() + "\n"
    write_text(args.output, text)
    return 0
