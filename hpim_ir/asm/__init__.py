"""The `.hpimasm` assembly: text for HBM-PIM instruction streams (docs/assembly.md).

`read_asm` / `write_asm` convert between text and the simulator's `HbmProgram`;
`asm_to_module` / `module_to_asm` between text and an `hbm_isa.stream` in a module. The
grammar is `hpimasm.lark`; `syntax.py` says which fields each instruction has. Reading and
writing import neither xDSL nor (unless a line needs it) lark, so `hpim run-isa` starts fast.
"""

from typing import TYPE_CHECKING

from hpim_ir.asm.reader import read_asm, read_asm_reference
from hpim_ir.asm.writer import write_asm
from hpim_ir.errors import HpimError

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp


def asm_to_module(text: str, filename: str = "<input>") -> "ModuleOp":
    """A module holding one `hbm_isa.stream` with the instructions written in `text`."""
    from xdsl.dialects.builtin import ModuleOp

    from hpim_ir.dialects.hbm_isa import ops_from_program

    return ModuleOp([ops_from_program(read_asm(text, filename))])


def module_to_asm(module: "ModuleOp") -> str:
    """The assembly of the one `hbm_isa.stream` in `module` (HpimError if not exactly one)."""
    from hpim_ir.dialects.hbm_isa import StreamOp, program_from_ops

    streams = [op for op in module.walk() if isinstance(op, StreamOp)]
    if len(streams) != 1:
        raise HpimError(f"expected one hbm_isa.stream in the module, found {len(streams)}")
    return write_asm(program_from_ops(streams[0]))


__all__ = ["asm_to_module", "module_to_asm", "read_asm", "read_asm_reference", "write_asm"]
