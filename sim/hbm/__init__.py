"""The HBM-PIM subsystem simulated at DRAM-command level.

`simulate(program, hw)` runs an `HbmProgram` (`program.py`) on a hardware description and
returns an `HbmResult`; `start(program, hw)` gives an `HbmSimulation` to drive wait by wait
(the central scheduler's interface); `write_trace_csv` exports its command trace; `bind_context`, `unroll`
and `expand_sections` make a compiled program's context-dependent counts and repeated
sections concrete. The model (controllers, bank state, every timing rule, refresh, energy)
is documented in `docs/hbm-engine.md`; the modules: `timing` (commands and rules), `normal`
(bank numbers, the read / write macros), `controller` (the per-channel policy), `reference`
and `fast` (the two engines), `trace`, `energy`, `engine` (validation and results).
"""

from hpim_ir.sim.hbm.engine import (
    ENGINES,
    TIMELINE_DTYPE,
    HbmResult,
    HbmSimulation,
    simulate,
    start,
    validate_program,
)
from hpim_ir.sim.hbm.program import (
    RECORD_DTYPE,
    HbmOp,
    HbmProgram,
    Section,
    bind_context,
    expand_sections,
    unroll,
)
from hpim_ir.sim.hbm.timing import Cmd
from hpim_ir.sim.hbm.trace import TRACE_DTYPE, write_trace_csv

__all__ = [
    "ENGINES",
    "RECORD_DTYPE",
    "TIMELINE_DTYPE",
    "TRACE_DTYPE",
    "Cmd",
    "HbmOp",
    "HbmProgram",
    "HbmResult",
    "HbmSimulation",
    "Section",
    "bind_context",
    "expand_sections",
    "simulate",
    "start",
    "unroll",
    "validate_program",
    "write_trace_csv",
]
