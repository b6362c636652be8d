"""Writing an `HbmProgram` as `.hpimasm` text, in the canonical spelling.

Canonical: one instruction per line, fields in grammar order separated by one space, a
macro-instruction's single channel as `ch=C` (not `ch=C:C+1`), no comments. Reading the text
back (`read_asm`) gives the same records, line numbers aside.
"""

from hpim_ir.asm.syntax import fields_of_record
from hpim_ir.sim.hbm.program import HbmProgram


def write_asm(program: HbmProgram) -> str:
    """The canonical text of `program`; HpimError names the first record it cannot write."""
    return "".join(
        _line(*fields_of_record(record, index)) + "\n"
        for index, record in enumerate(program.records.tolist())
    )


def _line(syntax, channels, values) -> str:
    words = [syntax.mnemonic]
    if channels is not None:
        lo, hi = channels
        words.append(f"ch={lo}" if hi == lo + 1 else f"ch={lo}:{hi}")
    words.extend(f"{field.name}={values[field.name]}" for field in syntax.fields)
    return " ".join(words)
