"""User-facing errors and the guard every command-line tool runs under.

`HpimError` is the one exception type that tools turn into a clean diagnostic: the message
names what is wrong (the key, the tensor, the op) and the tool exits non-zero without a
traceback. `run_guarded` is that rule, shared by `hpim` and `hpim-opt`; `write_text` writes
a tool's output file under it (a path that cannot be written is an `HpimError`).
"""

import os
import sys
from collections.abc import Callable


class HpimError(Exception):
    """Bad input or an impossible request; `str(error)` is the whole message for the user."""

    exit_code: int = 1


def write_text(path: str | os.PathLike | None, text: str) -> None:
    """Write `text` to the file `path` (a tool's `-o`; None or empty: standard output); a
    path that cannot be written (a missing folder, a directory, no permission) raises
    HpimError `cannot write PATH: reason`."""
    if not path:
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as error:
        raise HpimError(f"cannot write {path}: {error.strerror}") from None


def run_guarded(
    tool: str, body: Callable[[], int], input_errors: tuple[type[BaseException], ...] = ()
) -> int:
    """Run a tool's body: `HpimError` and `input_errors` print as `tool: error: message`
    (exit 1), anything else as an internal error (exit 3) without a traceback unless
    HPIM_TRACEBACK is set."""
    try:
        return body()
    except (HpimError, *input_errors) as error:
        print(f"{tool}: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug in hpim: still no traceback for the user
        if os.environ.get("HPIM_TRACEBACK"):
            raise
        print(
            f"{tool}: internal error: {type(error).__name__}: {error} "
            "(set HPIM_TRACEBACK=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 3
