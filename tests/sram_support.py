"""Test support for the SRAM-PIM engine: a small machine with round numbers (so that tests
can derive cycle counts by hand), and a time-stepped reference simulator.

The reference advances one cycle at a time and lets each core dispatch its next instruction
at the first cycle every condition of `docs/sram-engine.md` holds, granting the link to the
cores that dispatch in the same cycle in core order. It shares nothing with the engine's
event loop (no queue, no running ahead), only the bound program (sizes and per-instruction
cycles, which `test_sram_timing.py` checks on their own) and the NoC's routes and
reservations (`noc.py`, checked by hand in `test_sram_engine.py`).
"""

import dataclasses
import tomllib
from typing import Any

from hpim_ir.hardware import load_hardware
from hpim_ir.hardware.sram import parse_link_section, parse_sram_section
from hpim_ir.sim.sram import SramOp, SramProgram, bind
from hpim_ir.sim.sram.noc import Noc

# Round numbers: a 4 x 4 TCU, 8 VCU lanes, 4 macros of 8 x 8 with 4 multipliers, 64 B per
# cycle of link at 1 GHz with 10 ns latency, a 2 x 2 mesh of 8 B/cycle links.
SMALL_MACHINE = """
[sram]
cores = 4
clock_mhz = 1000
pipeline_stages = 3
activation_memory_bytes = 4096
kv_cache = "hbm"

[sram.tcu]
rows = 4
cols = 4

[sram.vcu]
lanes = 8
latency_cycles = 2
elementwise_per_cycle = 8
reduce_per_cycle = 8
exp_per_cycle = 2
gelu_per_cycle = 4
silu_per_cycle = 2
rsqrt_per_cycle = 1

[sram.pim]
groups = 2
macros_per_group = 2
multipliers_per_macro = 4
macro_rows = 8
macro_cols = 8
write_bytes_per_cycle = 16
mvm_latency_cycles = 3

[sram.transpose]
elements_per_cycle = 4
latency_cycles = 2

[sram.noc]
topology = "mesh"
mesh_cols = 2
link_bytes_per_cycle = 8
hop_cycles = 1

[link]
bandwidth_gbs = 64
latency_ns = 10
"""


def tables(**overrides: dict[str, Any]) -> dict[str, Any]:
    """The small machine's tables; `overrides` maps a table path (`sram`, `sram_pim`
    for `sram.pim`, `link`) to keys to replace (None: to remove)."""
    data = tomllib.loads(SMALL_MACHINE)
    for path, values in overrides.items():
        table = data
        for part in path.split("_"):
            table = table[part]
        for key, value in values.items():
            if value is None:
                del table[key]
            else:
                table[key] = value
    return data


def machine(**overrides: dict[str, Any]):
    """The small machine (see `tables`) as a `Hardware`."""
    data = tables(**overrides)
    return dataclasses.replace(
        load_hardware("hbm3-5.2gbps"),
        name="small",
        sram=parse_sram_section(data["sram"], "small.toml"),
        link=parse_link_section(data["link"], "small.toml"),
    )


def reference(program: SramProgram, hw, ctx: int, tokens: dict[int, int] | None = None):
    """(start, end) of every bound instruction and the raised tokens, cycle by cycle."""
    bound = bind(program, hw, ctx)
    records = bound.records
    cores = hw.sram.cores
    noc = Noc(hw.sram)
    pc = [int(bound.core_start[c]) for c in range(cores)]
    stop = [int(bound.core_start[c + 1]) for c in range(cores)]
    last = [hw.sram.pipeline_stages - 2] * cores
    free = [[0] * 6 for _ in range(cores)]
    ready: list[dict[int, int]] = [{} for _ in range(cores)]
    reads: list[dict[int, int]] = [{} for _ in range(cores)]
    done = [0] * cores
    times: dict[int, tuple[int, int]] = {}
    known = dict(tokens or {})
    raised: dict[int, int] = {}
    reached: dict[int, list[int]] = {}  # signal record -> raise candidates
    gathered: dict[int, list[tuple[int, int]]] = {}  # collective record -> (core, instruction)
    link_free = [0, 0]

    def span(record: int) -> range:
        lo, hi = int(records["core_lo"][record]), int(records["core_hi"][record])
        return range(0, cores) if (lo, hi) == (0, -1) else range(lo, hi)

    def retire(c: int, i: int, start: int, end: int) -> None:
        times[i] = (start, end)
        last[c] = start
        for unit in bound.units[i]:
            if unit >= 0:
                free[c][unit] = end
        if bound.dst[i] >= 0:
            ready[c][int(bound.dst[i])] = end
        for buf in (bound.src0[i], bound.src1[i]):
            if buf >= 0:
                reads[c][int(buf)] = max(reads[c].get(int(buf), 0), end)
        done[c] = max(done[c], end)
        pc[c] = i + 1

    def possible(c: int, i: int, cycle: int) -> bool:
        needs = [last[c] + 1]
        needs += [ready[c].get(int(b), 0) for b in (bound.src0[i], bound.src1[i]) if b >= 0]
        if bound.dst[i] >= 0:
            b = int(bound.dst[i])
            needs += [ready[c].get(b, 0), reads[c].get(b, 0)]
        needs += [free[c][u] for u in bound.units[i] if u >= 0]
        return max(needs) <= cycle

    cycle = 0
    while any(p < s for p, s in zip(pc, stop)):
        changed = True
        while changed:  # a token raised this cycle may release a wait this cycle
            changed = False
            for c in range(cores):
                while pc[c] < stop[c] and bound.op[pc[c]] in (SramOp.ALLOC, SramOp.FREE):
                    times[pc[c]] = (last[c] + 1, last[c] + 1)
                    pc[c] += 1
                if pc[c] == stop[c]:
                    continue
                i = pc[c]
                op = SramOp(int(bound.op[i]))
                record = int(bound.record[i])
                if any(core == c for core, _ in gathered.get(record, ())):
                    continue
                if not possible(c, i, cycle):
                    continue
                if op == SramOp.WAIT:
                    token = int(records["tok"][record])
                    when = known.get(token, raised.get(token))
                    if when is None or when > cycle:
                        continue
                    retire(c, i, cycle, cycle)
                elif op == SramOp.BARRIER:
                    if done[c] > cycle:
                        continue
                    retire(c, i, cycle, cycle)
                elif op == SramOp.SIGNAL:
                    retire(c, i, cycle, cycle)
                    reached.setdefault(record, []).append(max(cycle, done[c]))
                    if len(reached[record]) == len(span(record)):
                        raised[int(records["tok"][record])] = max(reached[record])
                elif op in (SramOp.LOAD, SramOp.STORE, SramOp.STREAM_MVM):
                    direction = 1 if op == SramOp.STORE else 0
                    begin = max(cycle, link_free[direction])
                    link_free[direction] = begin + int(bound.link_cycles[i])
                    retire(c, i, cycle, begin + int(bound.cycles[i]))
                elif op in (SramOp.ALLGATHER, SramOp.REDUCE):
                    arrived = gathered.setdefault(record, [])
                    arrived.append((c, i))
                    if len(arrived) == len(span(record)):
                        end = noc.collective(op, span(record), int(bound.sizes[i, 0]), cycle)
                        for core, j in gathered.pop(record):
                            retire(core, j, cycle, end)
                else:
                    retire(c, i, cycle, cycle + int(bound.cycles[i]))
                changed = True
        cycle += 1
    return [times[i] for i in range(len(bound.op))], raised
