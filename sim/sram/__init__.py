"""The SRAM-PIM subsystem simulated at instruction level per core.

`SramEngine(hw).run(program, ctx)` runs an `SramProgram` (`program.py`) at context length
`ctx` and returns an `SramResult`; `SramEngine.start` gives an `SramSimulation` a central
scheduler can drive event by event. The model (issue pipeline, dependencies, units, PIM
macros, TCU, VCU, activation memory, NoC, link) is documented in `docs/sram-engine.md`;
the modules: `program` (the stream), `timing` (closed forms), `noc` (routes, reservations,
collectives), `bind` (sizes, validation, capacity), `engine` (the event loop, results).
"""

from hpim_ir.sim.sram.bind import BoundProgram, bind
from hpim_ir.sim.sram.engine import TIMELINE_DTYPE, SramEngine, SramResult, SramSimulation
from hpim_ir.sim.sram.program import (
    CTX,
    FORMS,
    RECORD_DTYPE,
    Affine,
    ProgramBuilder,
    SramOp,
    SramProgram,
    Space,
    VcuFn,
)
from hpim_ir.sim.sram.timing import Unit

__all__ = [
    "CTX",
    "FORMS",
    "RECORD_DTYPE",
    "TIMELINE_DTYPE",
    "Affine",
    "BoundProgram",
    "ProgramBuilder",
    "SramEngine",
    "SramOp",
    "SramProgram",
    "SramResult",
    "SramSimulation",
    "Space",
    "Unit",
    "VcuFn",
    "bind",
]
