"""What the assembly tests share: reading a bad line with both readers."""

import pytest

from hpim_ir.asm import read_asm, read_asm_reference
from hpim_ir.errors import HpimError


def assert_line_4_error(text: str, line: str, column: int, message: str) -> None:
    """Both readers reject `text`, whose fourth line is `line`, with `k.hpimasm:4:COLUMN:
    MESSAGE`, the source line, and a caret under the column."""
    for read in (read_asm, read_asm_reference):
        with pytest.raises(HpimError) as error:
            read(text, "k.hpimasm")
        first, source, caret = str(error.value).split("\n")
        assert first == f"k.hpimasm:4:{column}: {message}"
        assert source.strip() == line.strip() and len(caret.rstrip()) - 4 == column
