"""Writing a program as `.hpimasm` text, in the canonical spelling.

Canonical: one instruction per line, fields in grammar order separated by one space, a single
channel or core as `ch=C` / `cores=C` (not `C:C+1`), `ctx=A/D` only where an HBM-PIM count
depends on the context and `off=Q` only where that term has an offset, sizes as `size_text`
spells them, `part=` only where an instruction has a part, no comments. Each section is its
directive, then its HBM-PIM lines, then its SRAM-PIM lines: every section but a first plain one
gets its directive (a first plain section is written bare unless it is empty and others follow,
which `.section` alone keeps). Reading the text back (`read_asm`) gives the same records,
sections and parts, line numbers aside.
"""

from typing import TYPE_CHECKING

from hpim_ir.asm.syntax import (
    CONTEXT_FIELDS,
    CONTEXT_OFFSET,
    fields_of_record,
    part_problem,
    section_line,
    section_problem,
    size_text,
)
from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.program import HbmProgram

if TYPE_CHECKING:
    from hpim_ir.sim.program import MachineProgram


def write_asm(program: "HbmProgram | MachineProgram") -> str:
    """The canonical text of `program`; HpimError names the first record (or section, or
    part) it cannot write."""
    from hpim_ir.sim.program import MachineProgram

    if isinstance(program, HbmProgram):
        program = MachineProgram.from_hbm(program)
    hbm_records = program.hbm.records.tolist()
    sram_lines = _sram_lines(program) if program.has_sram else []
    lines = []
    for number, (section, hbm) in enumerate(zip(program.sections, program.hbm.sections)):
        fields = (hbm.name, hbm.repeat, hbm.row_stride)
        if problem := section_problem(*fields):
            raise HpimError(f"section {number}: {problem}")
        empty = section.hbm[0] == section.hbm[1] and section.sram[0] == section.sram[1]
        if not (number == 0 and hbm.plain and (not empty or len(program.sections) == 1)):
            lines.append(section_line(*fields))
        lines += [
            _hbm_line(*fields_of_record(hbm_records[index], index))
            + _part(program.hbm_parts, index, "hbm")
            for index in range(*section.hbm)
        ]
        lines += sram_lines[slice(*section.sram)]
    return "".join(line + "\n" for line in lines)


def _hbm_line(syntax, channels, values) -> str:
    words = [syntax.mnemonic]
    if channels is not None:
        words.append(f"ch={_range(*channels)}")
    words.extend(f"{field.name}={values[field.name]}" for field in syntax.fields)
    if CONTEXT_FIELDS[0] in values:
        words.append("ctx={}/{}".format(*(values[name] for name in CONTEXT_FIELDS)))
    if CONTEXT_OFFSET in values:
        words.append(f"off={values[CONTEXT_OFFSET]}")
    return " ".join(words)


def _sram_lines(program: "MachineProgram") -> list[str]:
    """The line of every SRAM-PIM record. The `sram_isa` dialect checks each record and
    names its fields (HpimError names the first record that is no instruction)."""
    from hpim_ir.dialects.sram_isa import INTEGER_FIELDS, ops_from_program
    from hpim_ir.sim.sram.program import SramOp

    lines = []
    for index, op in enumerate(ops_from_program(program.sram).body.block.ops):
        # A vcu's function is part of its mnemonic; an alloc's space is its first field.
        kind = op.kind_name()
        words = [f"sram.{op.OP.name.lower()}"]
        if op.OP is SramOp.VCU:
            words[0] += f".{kind}"
        elif kind is not None:
            words.append(f"space={kind}")
        if (cores := op.cores()) is not None:
            words.append(f"cores={_range(*cores)}")
        words += [
            f"{name}={value}" for name in INTEGER_FIELDS if (value := op.integer(name)) is not None
        ]
        words += [f"{name}={size_text(size)}" for name, size in op.sizes().items()]
        lines.append(" ".join(words) + _part(program.sram_parts, index, "sram"))
    return lines


def _range(lo: int, hi: int) -> str:
    return f"{lo}" if hi == lo + 1 else f"{lo}:{hi}"


def _part(parts, index: int, stream: str) -> str:
    """` part=NAME` of record `index` of a stream, or "" if it has none."""
    part = "" if parts is None else str(parts[index])
    if not part:
        return ""
    if problem := part_problem(part):
        raise HpimError(f"{stream} record {index}: {problem}")
    return f" part={part}"
