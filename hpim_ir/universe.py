"""The registry of hpim's dialects and passes.

Entries are lazy (module path, attribute) pairs so that `hpim-opt --help` and the `hpim` CLI
do not import every dialect and pass up front. The same tables back `hpim-opt` and the
`xdsl.universe` entry point, through which stock `xdsl-opt` loads our dialects and passes.

Users add their own passes and dialects two ways (docs/pass-authoring.md):
- from Python, `register_pass(MyPass)` / `register_dialect(MY_DIALECT)`, seen by `hpim-opt`'s
  `main` and by `hpim-lower` in the same process;
- from a package, an entry point in the `hpim.universe` group naming an xDSL `Universe`,
  seen by every `hpim-opt` in the environment.
"""

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points

from xdsl.context import Context
from xdsl.dialects import get_all_dialects
from xdsl.ir import Dialect
from xdsl.passes import ModulePass
from xdsl.universe import Universe

from hpim_ir.errors import HpimError

# name -> (module, attribute): the dialect objects hpim defines.
DIALECTS: dict[str, tuple[str, str]] = {
    "llm": ("hpim_ir.dialects.llm", "LLM"),
    "hbm_isa": ("hpim_ir.dialects.hbm_isa", "HbmIsa"),
    "pim": ("hpim_ir.dialects.pim", "PIM"),
    "sram_isa": ("hpim_ir.dialects.sram_isa", "SramIsa"),
}

# name -> (module, attribute): the passes hpim defines, one module each.
PASSES: dict[str, tuple[str, str]] = {
    "llm-annotate": ("hpim_ir.passes.llm_annotate", "LlmAnnotatePass"),
    "convert-llm-to-pim": ("hpim_ir.passes.convert_llm_to_pim", "ConvertLlmToPimPass"),
    "pim-tile-hbm": ("hpim_ir.passes.pim_tile_hbm", "PimTileHbmPass"),
    "pim-tile-sram": ("hpim_ir.passes.pim_tile_sram", "PimTileSramPass"),
    "pim-schedule": ("hpim_ir.passes.pim_schedule", "PimScheduleAnalysisPass"),
    "pim-insert-pipeline": ("hpim_ir.passes.pim_insert_pipeline", "PimInsertPipelinePass"),
    "convert-pim-to-isa": ("hpim_ir.passes.convert_pim_to_isa", "ConvertPimToIsaPass"),
    "hpim-lower": ("hpim_ir.passes.hpim_lower", "HpimLowerPass"),
}

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

EXTENSION_GROUP = "hpim.universe"
"""Entry-point group of packages that extend hpim with passes and dialects."""

_REGISTERED = Universe()


def register_pass(pass_class: type[ModulePass]) -> type[ModulePass]:
    """Make a pass available to `hpim-opt` by its `name` (usable as a class decorator)."""
    _REGISTERED.all_passes[pass_class.name] = lambda: pass_class
    return pass_class


def register_dialect(dialect: Dialect) -> Dialect:
    """Make a dialect available to `hpim-opt`."""
    _REGISTERED.all_dialects[dialect.name] = lambda: dialect
    return dialect


def _universes() -> list[Universe]:
    """hpim's own universe, then the Python-registered one, then each extension package's."""
    extensions = [point.load() for point in entry_points(group=EXTENSION_GROUP)]
    for point, universe in zip(entry_points(group=EXTENSION_GROUP), extensions):
        if not isinstance(universe, Universe):
            raise HpimError(
                f"entry point {point.name!r} in group {EXTENSION_GROUP} is not an xDSL Universe"
            )
    return [HPIM_UNIVERSE, _REGISTERED, *extensions]


def _merged(kind: str) -> dict:
    merged: dict = {}
    for universe in _universes():
        for name, factory in getattr(universe, kind).items():
            if name in merged and merged[name] is not factory:
                raise HpimError(f"two definitions of {name!r} ({kind.removeprefix('all_')[:-1]})")
            merged[name] = factory
    return merged


def all_dialects() -> dict[str, Callable[[], Dialect]]:
    """Every dialect `hpim-opt` offers: hpim's, registered ones and extensions'."""
    return _merged("all_dialects")


def register_dialects(ctx: Context) -> Context:
    """Register in `ctx` the upstream dialects hpim's IR uses and every hpim dialect
    (`all_dialects`); returns `ctx`."""
    upstream = get_all_dialects()
    for name in UPSTREAM_DIALECTS:
        ctx.register_dialect(name, upstream[name])
    for name, factory in all_dialects().items():
        ctx.register_dialect(name, factory)
    return ctx


def all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Every pass `hpim-opt` offers: hpim's, registered ones and extensions'."""
    return _merged("all_passes")
