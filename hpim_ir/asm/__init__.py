"""The `.hpimasm` assembly: text for HBM-PIM instruction streams (docs/assembly.md).

`read_asm` / `write_asm` convert between text and the simulator's `HbmProgram`;
`asm_to_module` / `module_to_asm` between text and the `hbm_isa.stream`s of a module (one per
section). The grammar is `hpimasm.lark`; `syntax.py` says which fields each instruction has.
Reading and writing import neither xDSL nor (unless a line needs it) lark, so `hpim run-isa`
starts fast.
"""

from typing import TYPE_CHECKING

from hpim_ir.asm.reader import read_asm, read_asm_reference
from hpim_ir.asm.writer import write_asm
from hpim_ir.errors import HpimError

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp


def asm_to_module(text: str, filename: str = "<input>") -> "ModuleOp":
    """A module holding the `hbm_isa.stream`s of the sections written in `text`."""
    from xdsl.dialects.builtin import ModuleOp

    from hpim_ir.dialects.hbm_isa import streams_from_program

    return ModuleOp(streams_from_program(read_asm(text, filename)))


def module_to_asm(module: "ModuleOp") -> str:
    """The assembly of the `hbm_isa.stream`s in `module`, one section each (HpimError if
    there is none)."""
    from hpim_ir.dialects.hbm_isa import StreamOp, program_from_streams

    streams = [op for op in module.walk() if isinstance(op, StreamOp)]
    if not streams:
        raise HpimError("expected an hbm_isa.stream in the module, found none")
    return write_asm(program_from_streams(streams))


__all__ = ["asm_to_module", "module_to_asm", "read_asm", "read_asm_reference", "write_asm"]
