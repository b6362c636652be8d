"""Writing an `HbmProgram` as `.hpimasm` text, in the canonical spelling.

Canonical: one instruction per line, fields in grammar order separated by one space, a
macro-instruction's single channel as `ch=C` (not `ch=C:C+1`), `ctx=A/D` only where the count
depends on the context, no comments. Sections become `.section` lines: every section but a
first plain one gets its directive (a first plain section is written bare unless it is empty
and others follow, which `.section` alone keeps). Reading the text back (`read_asm`) gives
the same records and sections, line numbers aside.
"""

from hpim_ir.asm.syntax import CONTEXT_FIELDS, fields_of_record, section_line, section_problem
from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.program import HbmProgram


def write_asm(program: HbmProgram) -> str:
    """The canonical text of `program`; HpimError names the first record (or section) it
    cannot write."""
    records = program.records.tolist()
    lines = []
    for number, section in enumerate(program.sections):
        fields = (section.name, section.repeat, section.row_stride)
        if problem := section_problem(*fields):
            raise HpimError(f"section {number}: {problem}")
        bare = number == 0 and section.plain and (section.stop > 0 or len(program.sections) == 1)
        if not bare:
            lines.append(section_line(*fields))
        lines += [
            _line(*fields_of_record(records[index], index))
            for index in range(section.start, section.stop)
        ]
    return "".join(line + "\n" for line in lines)


def _line(syntax, channels, values) -> str:
    words = [syntax.mnemonic]
    if channels is not None:
        lo, hi = channels
        words.append(f"ch={lo}" if hi == lo + 1 else f"ch={lo}:{hi}")
    words.extend(f"{field.name}={values[field.name]}" for field in syntax.fields)
    if CONTEXT_FIELDS[0] in values:
        words.append("ctx={}/{}".format(*(values[name] for name in CONTEXT_FIELDS)))
    return " ".join(words)
