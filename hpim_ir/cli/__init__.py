"""The `hpim` command line: one module per subcommand.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int`; the table
below maps the command name to its module and one-line help. Modules keep their imports of
xDSL and numpy inside `run`, so `hpim --help` stays fast. Bad input is reported by raising
`HpimError`: `main` prints its message (no traceback) and exits non-zero.
"""

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from hpim_ir import __version__
from hpim_ir.errors import run_guarded

# command -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("hpim_ir.cli.import_cmd", "import a model into the llm dialect"),
    "compile": ("hpim_ir.cli.compile_cmd", "compile a model to the HBM-PIM and SRAM-PIM ISA"),
    "simulate": ("hpim_ir.cli.simulate_cmd", "simulate a request (prefill + decode) against baselines"),
    "translate": ("hpim_ir.cli.translate", "convert between hbm_isa IR and .hpimasm assembly"),
    "run-isa": ("hpim_ir.cli.run_isa", "simulate an ISA program on both subsystems"),
    "run": ("hpim_ir.cli.run_cmd", "compute a model's logits with its compiled program (--functional)"),
    "eval": ("hpim_ir.cli.eval_cmd", "reproduce the HPIM paper's evaluation (tables, plots)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpim",
        description="Compiler and cycle-accurate simulator for the HPIM accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"hpim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        import_module(module).add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(f"hpim {args.command}", lambda: import_module(args._module).run(args))


if __name__ == "__main__":
    sys.exit(main())
