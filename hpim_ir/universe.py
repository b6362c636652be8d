"""The registry of hpim's dialects and passes.

Entries are lazy (module path, attribute) pairs so that `hpim-opt --help` and the `hpim` CLI
do not import every dialect and pass up front. The same tables back `hpim-opt` and the
`xdsl.universe` entry point, through which stock `xdsl-opt` loads our dialects and passes.
Downstream projects extend the set through their own `xdsl.universe` entry point.
"""

from collections.abc import Callable
from importlib import import_module

from xdsl.ir import Dialect
from xdsl.passes import ModulePass
from xdsl.universe import Universe

# name -> (module, attribute): the dialect objects hpim defines.
DIALECTS: dict[str, tuple[str, str]] = {
    "llm": ("hpim_ir.dialects.llm", "LLM"),
}

# name -> (module, attribute): the passes hpim defines, one module each.
PASSES: dict[str, tuple[str, str]] = {}

# Upstream dialects that hpim's IR uses and `hpim-opt` therefore parses.
UPSTREAM_DIALECTS = ("builtin", "func", "arith")

# Upstream passes that are useful on hpim's IR.
UPSTREAM_PASSES = ("canonicalize", "dce", "cse")


def _lazy(module: str, attribute: str) -> Callable[[], object]:
    def load() -> object:
        return getattr(import_module(module), attribute)

    return load


def hpim_dialects() -> dict[str, Callable[[], Dialect]]:
    """hpim's own dialects, as lazy factories."""
    return {name: _lazy(*where) for name, where in DIALECTS.items()}  # type: ignore[misc]


def hpim_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """hpim's own passes, as lazy factories."""
    return {name: _lazy(*where) for name, where in PASSES.items()}  # type: ignore[misc]


HPIM_UNIVERSE = Universe(all_dialects=hpim_dialects(), all_passes=hpim_passes())
