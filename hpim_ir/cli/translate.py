"""`hpim translate FILE --to-asm | --from-asm [-o OUT]`: ISA IR <-> `.hpimasm` assembly.

`--to-asm` reads an MLIR module holding `hbm_isa.stream`s and `sram_isa.stream`s (per section
one of each, as `hpim compile` writes) and writes their assembly in the canonical spelling;
`--from-asm` reads assembly and writes the module. The round trips are exact: asm -> mlir ->
asm gives the canonical text, mlir -> asm -> mlir the same streams (`part` attributes
included). FILE `-` is stdin. Errors name the file, line and column (docs/assembly.md).
"""

import argparse
import io
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the input: MLIR with --to-asm, .hpimasm with --from-asm ('-': stdin)")
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to-asm", action="store_true", help="MLIR (ISA streams) -> .hpimasm")
    direction.add_argument("--from-asm", action="store_true", help=".hpimasm -> MLIR")
    parser.add_argument("-o", "--output", help="write the result here instead of stdout")


def run(args: argparse.Namespace) -> int:
    from hpim_ir.asm import asm_to_module, module_to_asm
    from hpim_ir.errors import write_text

    text = _read(args.file)
    name = "<stdin>" if args.file == "-" else args.file
    if args.to_asm:
        from hpim_ir.opt import parse_module_text

        result = module_to_asm(parse_module_text(text, name))
    else:
        from xdsl.printer import Printer

        output = io.StringIO()
        Printer(stream=output).print_op(asm_to_module(text, name))
        result = output.getvalue() + "\n"
    write_text(args.output, result)
    return 0


def _read(path: str) -> str:
    from hpim_ir.errors import HpimError

    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise HpimError(f"cannot read {path}: {reason}") from None


