"""`hpim import MODEL`: a zoo model or a Hugging Face config into the `llm` dialect.

Prints the module (or writes it with `-o`); `--stats` prints parameters, FP16 weight bytes,
KV-cache bytes per token and FLOPs per decode token, `--json` the same as JSON.
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name (e.g. opt-6.7b), config.json, or a folder holding one")
    parser.add_argument("--phase", choices=("decode", "prefill"), default="decode")
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens (prefill length)")
    parser.add_argument("-o", "--output", help="write the module here instead of stdout")
    parser.add_argument("--stats", action="store_true", help="print model statistics")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")


def run(args: argparse.Namespace) -> int:
    import io

    from xdsl.printer import Printer

    from hpim_ir.errors import write_text
    from hpim_ir.frontend import build_module, load_config, model_stats
    from hpim_ir.frontend.config import check_prompt

    config = load_config(args.model)
    want_stats = args.stats or args.json
    if want_stats:  # a decode step does not depend on --prompt, but its statistics do
        check_prompt(config, args.prompt)
    module = build_module(config, phase=args.phase, prompt=args.prompt)
    module.verify()
    if args.output or not want_stats:
        text = io.StringIO()
        Printer(stream=text).print_op(module)
        text.write("\n")
        write_text(args.output, text.getvalue())
    if want_stats:
        stats = model_stats(module)
        # FLOPs per decode token at the end of a prompt of --prompt tokens: the context then
        # holds prompt + 1 tokens.
        context = args.prompt + 1
        if args.json:
            report = stats.as_dict()
            report["flops_per_decode_token"] = stats.flops_at(context)
            report["flops_context"] = context
            print(json.dumps(report, indent=2))
        else:
            print(_table(stats, context))
    return 0


def _table(stats, context: int) -> str:
    rows = [
        ("model", f"{stats.model} ({stats.family}, {stats.phase})"),
        ("parameters", f"{stats.parameters:,}"),
        ("FP16 weight bytes", f"{stats.weight_bytes_fp16:,} ({stats.weight_bytes_fp16 / 2**30:.2f} GiB)"),
        ("KV-cache bytes per token", f"{stats.kv_cache_bytes_per_token:,}"),
        (
            "FLOPs per decode token",
            f"{stats.flops_fixed:,} + {stats.flops_per_context_token:,} x context "
            f"= {stats.flops_at(context):,} at context {context}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
