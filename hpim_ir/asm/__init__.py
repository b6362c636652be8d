"""The `.hpimasm` assembly: text for the ISA streams of both subsystems (docs/assembly.md).

`read_asm` / `write_asm` convert between text and the simulator's programs (an `HbmProgram`
for HBM-PIM lines alone, a `MachineProgram` for mixed text); `asm_to_module` /
`module_to_asm` between text and a module of `hbm_isa.stream`s and `sram_isa.stream`s (one
of each per section, as `convert-pim-to-isa` emits them). The grammar is `hpimasm.lark`;
`syntax.py` says which fields each HBM-PIM instruction has, the `sram_isa` dialect which
fields each SRAM-PIM instruction has. Reading HBM-PIM lines imports neither xDSL nor (unless
a line needs it) lark, so `hpim run-isa` starts fast on micro-benchmarks.
"""

from typing import TYPE_CHECKING

from hpim_ir.asm.reader import read_asm, read_asm_reference
from hpim_ir.asm.writer import write_asm

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp


def asm_to_module(text: str, filename: str = "<input>") -> "ModuleOp":
    """A module of the streams written in `text`: per section an `hbm_isa.stream` (if it has
    HBM-PIM lines, or no lines at all) and an `sram_isa.stream` (if it has SRAM-PIM lines),
    each with the section's fields and every instruction's `part` attribute."""
    from xdsl.dialects.builtin import ModuleOp, StringAttr

    from hpim_ir.dialects import hbm_isa, sram_isa
    from hpim_ir.sim.hbm.program import HbmProgram
    from hpim_ir.sim.program import MachineProgram
    from hpim_ir.sim.sram.program import SramProgram

    program = read_asm(text, filename)
    if isinstance(program, HbmProgram):
        program = MachineProgram.from_hbm(program, filename)
    streams = []
    hbm_streams = hbm_isa.streams_from_program(program.hbm)
    for section, fields, hbm_stream in zip(program.sections, program.hbm.sections, hbm_streams):
        has_sram = section.sram[1] > section.sram[0]
        if section.hbm[1] > section.hbm[0] or not has_sram:
            _tag(hbm_stream, program.hbm_parts, section.hbm[0])
            streams.append(hbm_stream)
        if has_sram:
            sram_stream = sram_isa.ops_from_program(
                SramProgram(program.sram.records[slice(*section.sram)])
            )
            if fields.name is not None:
                sram_stream.properties["section"] = StringAttr(fields.name)
            if fields.repeat is not None:
                sram_stream.properties["repeat"] = hbm_stream.properties["repeat"]
            _tag(sram_stream, program.sram_parts, section.sram[0])
            streams.append(sram_stream)
    return ModuleOp(streams)


def _tag(stream, parts, first: int) -> None:
    """Give each instruction of `stream` (records `first`, ... of its program) its part."""
    from xdsl.dialects.builtin import StringAttr

    if parts is None:
        return
    for op, part in zip(stream.body.block.ops, parts[first:].tolist()):
        if part:
            op.attributes["part"] = StringAttr(part)


def module_to_asm(module: "ModuleOp") -> str:
    """The assembly of the `hbm_isa.stream`s and `sram_isa.stream`s of `module`, paired into
    sections as the simulator pairs them (`MachineProgram.from_module`; HpimError if there is
    none, or a section's streams do not match)."""
    from hpim_ir.sim.program import MachineProgram

    return write_asm(MachineProgram.from_module(module))


__all__ = ["asm_to_module", "module_to_asm", "read_asm", "read_asm_reference", "write_asm"]
