"""`hpim-opt`: the MLIR-opt-like driver with hpim's curated dialects and passes.

It is xDSL's `xDSLOptMain` with a curated registry (hpim's dialects and passes plus the few
upstream ones hpim's IR uses) and one rule for bad input: a diagnostic with its location on
stderr and a non-zero exit, never a Python traceback. To give verifier errors a location, the
parser records each op's `file:line:col` as its MLIR location (printed only with
`--print-debuginfo`, as mlir-opt does), and the module is verified op by op before the passes.
"""

import re
import sys
from collections.abc import Sequence
from typing import IO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation
from xdsl.parser import Parser
from xdsl.transforms import get_all_passes
from xdsl.utils.lexer import Span
from xdsl.utils.mlir_lexer import MLIRLexer
from xdsl.utils.exceptions import (
    ArgSpecParseError,
    DiagnosticException,
    ParseError,
    PassFailedException,
    VerifyException,
)
from xdsl.xdsl_opt_main import xDSLOptMain

from hpim_ir import __version__
from hpim_ir.errors import HpimError, run_guarded
from hpim_ir.universe import UPSTREAM_PASSES, all_passes, register_dialects


# xDSL 0.74's string-literal regex backtracks exponentially on an unterminated literal (a
# truncated file hangs the parser for hours). The same pattern with possessive quantifiers
# (Python >= 3.11) matches exactly the same literals and fails in linear time.
MLIRLexer._unescaped_characters_regex = re.compile(
    r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"'
)


class LocatingParser(Parser):
    """An MLIR parser that remembers where each parsed op's text starts.

    Only the offset is kept (line and column are worked out for the op that fails), so
    parsing a large module stays linear.
    """

    def __init__(self, ctx, text: str, name: str, line_offset: int = 0):
        super().__init__(ctx, text, name)
        self.starts: dict[Operation, Span] = {}
        self._line_offset = line_offset

    def parse_operation(self) -> Operation:
        start = self._current_token.span
        op = super().parse_operation()
        self.starts[op] = Span(start.start, start.end, start.input, self._line_offset)
        return op


def _check_dominance(op: Operation, order: dict[Block, dict[Operation, int]]) -> None:
    """Every operand is defined before its use: in the same block earlier, or in an enclosing
    block before the op that contains the use (xDSL does not check this; MLIR does)."""
    for index, operand in enumerate(op.operands):
        definer = operand.owner
        if not isinstance(definer, Operation):
            continue  # a block argument: defined on entry to its block
        home = definer.parent_block()
        user: Operation | None = op
        while user is not None and user.parent_block() is not home:
            user = user.parent_op()
        if home is None or user is None:
            raise VerifyException(
                f"'{op.name}': operand {index} is defined in a region that does not enclose it"
            )
        if home not in order:
            order[home] = {o: i for i, o in enumerate(home.ops)}
        if order[home][definer] >= order[home][user]:
            raise VerifyException(f"'{op.name}': operand {index} is used before it is defined")


def verify_located(module: ModuleOp, starts: dict[Operation, Span]) -> None:
    """Verify every op, innermost first, and that values are defined before they are used; a
    failure raises `VerifyException` whose message is `file:line:col: message` and the source
    line with a caret under the op.

    xDSL's own verifier reports the failing op by printing the whole module; for a model with
    thousands of ops a location is what the user needs.
    """
    order: dict[Block, dict[Operation, int]] = {}
    for op in module.walk(reverse=True):
        try:
            _check_dominance(op, order)
            op.verify(verify_nested_ops=False)
        except VerifyException as error:
            message = str(error).removeprefix("Operation does not verify: ")
            if op in starts:
                raise VerifyException(starts[op].print_with_context(message).rstrip()) from None
            named = f"'{op.name}'" in message  # most verifiers name the op themselves
            raise VerifyException(message if named else f"{op.name}: {message}") from None


def parse_module_text(text: str, name: str) -> ModuleOp:
    """The verified module in `text` (a file named `name`), with hpim's dialects; a parse or
    verifier error raises HpimError carrying `file:line:col`."""
    parser = LocatingParser(register_dialects(Context()), text, name)
    try:
        module = parser.parse_module()
        verify_located(module, parser.starts)
    except (ParseError, VerifyException) as error:
        raise HpimError(str(error)) from None
    return module


class HpimOptMain(xDSLOptMain):
    """`xdsl-opt` restricted to the dialects and passes that make sense on hpim's IR, plus
    those users register (`hpim_ir.universe`)."""

    version_format = f"hpim-opt {__version__} (xdsl {{xdsl_version}})"

    def __init__(self, args: Sequence[str] | None = None):
        self._chunk_line_offset = 0
        self._op_starts: dict[Operation, Span] = {}
        super().__init__(description="hpim modular optimizer driver", args=args)

    def register_all_dialects(self):
        register_dialects(self.ctx)

    def register_all_passes(self):
        upstream = get_all_passes()
        for name in UPSTREAM_PASSES:
            self.register_pass(name, upstream[name])
        for name, factory in all_passes().items():
            self.register_pass(name, factory)

    def register_all_frontends(self):
        def parse_mlir(io: IO[bytes]) -> ModuleOp:
            try:
                text = io.read().decode()
            except UnicodeDecodeError:
                raise HpimError(f"cannot read {self.get_input_name()}: not UTF-8 text") from None
            parser = LocatingParser(
                self.ctx, text, self.get_input_name(), self._chunk_line_offset
            )
            module = parser.parse_module(not self.args.no_implicit_module)
            self._op_starts = parser.starts
            return module

        self.available_frontends["mlir"] = parse_mlir

    def parse_chunk(self, chunk: IO[bytes], file_extension: str, start_offset: int = 0):
        self._chunk_line_offset = start_offset
        return super().parse_chunk(chunk, file_extension, start_offset)

    def apply_passes(self, prog: ModuleOp):
        if not self.args.disable_verify:
            verify_located(prog, self._op_starts)
        super().apply_passes(prog)
        if not self.args.disable_verify and self.pipeline.passes:
            # Dominance too, which xDSL's verification after each pass leaves out: a pass
            # that moves an op above its operands' definitions fails here, not downstream.
            verify_located(prog, {})


# What a malformed input or a failing pass raises; each carries a located message.
_INPUT_ERRORS = (
    ArgSpecParseError,  # a malformed -p pipeline (a BaseException in xDSL)
    ParseError,
    DiagnosticException,
    PassFailedException,
    OSError,
    ValueError,
)


def main(args: Sequence[str] | None = None) -> int:
    def body() -> int:
        HpimOptMain(args=args).run()
        return 0

    return run_guarded("hpim-opt", body, _INPUT_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
