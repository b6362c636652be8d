"""Properties of whole-machine runs (hypothesis), and compiled decode steps end to end.

- Attention grows with the context, affinely up to rounding: the SRAM-PIM cycles of q.K^T,
  softmax and s.V in the example are a constant plus ceilings of (ctx + 1) / 8 (the MVMs:
  8 lanes per macro), / 16 (exp) and / 64 (the max, scale passes): non-decreasing, second
  differences at most 5 (one per ceiling) and exactly 0 over steps that are multiples of 64.
- More cores never make attention slower: with H heads on C cores (ceil(H / C) heads per
  core, the cores loading their queries over the shared link at once), a core's work is its
  heads', one after another, after its link transfer; more cores means fewer heads per core
  (each head at least 60 cycles) at the price of at most one more link cycle per extra core
  (at most 32), so the completion never grows.
- The per-part shares and spans (`unit_part_intervals`, `split_by_part`) equal a count
  cycle by cycle: at each cycle, the units working for each part (a unit once per part,
  however many of its intervals cover the cycle), each share the part's weight over all
  parts' weight, each span the cycles some unit works for the part.
- A compiled OPT-125m decode step runs end to end on both subsystems.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpim_ir.hardware import load_hardware
from hpim_ir.sim.hbm import HbmOp, HbmProgram
from hpim_ir.sim.program import MachineProgram, read_program
from hpim_ir.sim.scheduler import simulate_machine, split_by_part, unit_part_intervals
from hpim_ir.sim.sram import CTX, ProgramBuilder, SramOp, Space, VcuFn

HW = load_hardware("hpim")
EXAMPLE = read_program(Path(__file__).parent.parent / "examples" / "attention_head.mlir")


def attention_cycles(ctx: int) -> int:
    """Core 0's cycles in q.K^T, softmax and s.V of the example at `ctx`."""
    result = simulate_machine(EXAMPLE, HW, ctx=ctx)
    records = result.step.sram.records
    attention = (records["op"] == SramOp.MVM) | (
        (records["op"] == SramOp.VCU) & (records["kind"] == VcuFn.SOFTMAX)
    )
    timeline = result.sram.timeline
    core0 = timeline[(timeline["core"] == 0) & attention[timeline["record"]]]
    assert len(core0) == 3
    return int((core0["end"] - core0["start"]).sum())


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 1800), st.integers(1, 120))
def test_attention_grows_affinely_with_the_context(ctx: int, step: int) -> None:
    a, b, c = (attention_cycles(ctx + k * step) for k in range(3))
    assert a <= b <= c
    assert abs(c - 2 * b + a) <= 5


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 1500), st.integers(1, 4))
def test_attention_is_affine_over_multiples_of_64(ctx: int, multiple: int) -> None:
    step = 64 * multiple
    a, b, c = (attention_cycles(ctx + k * step) for k in range(3))
    assert c - b == b - a > 0


def heads_on_cores(heads: int, cores: int) -> MachineProgram:
    """H heads of 64 on C cores, their K^T and V resident: HBM-PIM raises token 0 when
    the queries are ready; each core loads its heads' queries, then per head q.K^T,
    softmax and s.V over the context (`ctx + 1` keys)."""
    hbm = HbmProgram.from_rows(
        [(HbmOp.READOUT, 0, 1, -1, -1, 4, 1), (HbmOp.SIGNAL, -1, -1, -1, -1, 0, 2)]
    )
    per_core = -(-heads // cores)
    used = (0, -(-heads // per_core))
    b = ProgramBuilder()
    b.add(SramOp.ALLOC, used, kind=Space.PIM, dst=0, sizes=[64 * per_core, CTX + 1])
    b.add(SramOp.ALLOC, used, kind=Space.PIM, dst=1, sizes=[CTX + 1, 64 * per_core])
    b.add(SramOp.ALLOC, used, kind=Space.AM, dst=2, sizes=[128 * per_core])
    b.add(SramOp.ALLOC, used, kind=Space.AM, dst=3, sizes=[CTX * 2 + 2])
    b.add(SramOp.ALLOC, used, kind=Space.AM, dst=4, sizes=[128 * per_core])
    b.add(SramOp.WAIT, used, tok=0)
    b.add(SramOp.LOAD, used, dst=2, sizes=[128 * per_core])
    for _ in range(per_core):
        b.add(SramOp.MVM, used, dst=3, src0=2, src1=0, sizes=[64, CTX + 1])
        b.add(SramOp.VCU, used, kind=VcuFn.SOFTMAX, dst=3, src0=3, sizes=[CTX + 1])
        b.add(SramOp.MVM, used, dst=4, src0=3, src1=1, sizes=[CTX + 1, 64])
    return MachineProgram.of(hbm, b.build())


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_more_cores_never_make_attention_slower(data) -> None:
    heads = data.draw(st.integers(1, 32), "heads")
    fewer = data.draw(st.integers(1, 31), "fewer cores")
    more = data.draw(st.integers(fewer + 1, 32), "more cores")
    # K^T and V of every head of a core fit its 512 KiB of macros: about 256 B per head
    # and key, so heads x (ctx + 8) <= 2048.
    ctx = data.draw(st.integers(1, max(1, 2048 // heads - 8)), "ctx")
    slow = simulate_machine(heads_on_cores(heads, fewer), HW, ctx=ctx)
    fast = simulate_machine(heads_on_cores(heads, more), HW, ctx=ctx)
    assert fast.sram.cycles <= slow.sram.cycles


# ---------------------------------------------------------------------------------------
# Compiled programs


def compiled(kv_cache: str, fill_banks: str):
    from xdsl.context import Context

    from hpim_ir import import_model
    from hpim_ir.passes.hpim_lower import HpimLowerPass

    module = import_model("opt-125m", phase="decode")
    HpimLowerPass(hw="hpim", kv_cache=kv_cache, max_context=256, fill_banks=fill_banks).apply(
        Context(), module
    )
    return MachineProgram.from_module(module, "opt-125m")


PARTS, UNITS = 3, 4
WEIGHTS = (3, 3, 5, 5)  # two units of each subsystem


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-1, UNITS - 1), st.integers(0, PARTS - 1), st.integers(0, 30),
                  st.integers(0, 8)),
        max_size=25,
    )
)
def test_part_shares_and_spans_equal_a_cycle_by_cycle_count(lines) -> None:
    # Each unit's starts ascend, as the engines' timelines give them.
    lines = sorted(lines, key=lambda line: (line[0], line[2]))
    unit, part, start, length = np.array(lines, dtype=np.int64).reshape(-1, 4).T
    units, parts, starts, ends = unit_part_intervals(unit, part, start, start + length, PARTS)
    share, span, busy = split_by_part(parts, starts, ends, np.array(WEIGHTS)[units], PARTS)
    expected_share, expected_span, expected_busy = np.zeros(PARTS), np.zeros(PARTS), 0
    for cycle in range(40):
        working = {(u, p) for u, p, s, n in lines if u >= 0 and s <= cycle < s + n}
        weight = [sum(WEIGHTS[u] for u, q in working if q == p) for p in range(PARTS)]
        if sum(weight):
            expected_busy += 1
            expected_share += np.array(weight) / sum(weight)
            expected_span += np.array(weight) > 0
    assert share == pytest.approx(expected_share) and span.tolist() == expected_span.tolist()
    assert busy == expected_busy and share.sum() == pytest.approx(busy)


@pytest.mark.parametrize("kv_cache", ["sram", "hbm"])
def test_a_compiled_decode_step_runs_on_both_subsystems(kv_cache: str) -> None:
    # The paper's spread (`fill_banks="none"`): Q, K and V one after the other on the same
    # channels, so SRAM-PIM works on one while HBM-PIM computes the next. (Filling the banks
    # computes them at once on disjoint channels: with the cache in SRAM nothing is left for
    # HBM-PIM to do during the attention, and the step is 18% shorter.)
    program = compiled(kv_cache, "none")
    result = simulate_machine(program, HW, ctx=200)
    # 12 layers: every token of the step raised once, by one side or the other.
    assert len(result.tokens) == len(result.step.token_origin)
    assert result.hbm_report.busy_cycles > 0 and result.sram_report.busy_cycles > 0
    assert result.ns == max(result.hbm_report.ns, result.sram_report.ns)
    # Both subsystems work at the same time somewhere in the step (the pipeline).
    assert result.overlap_ns > 0
    parts = set(result.step.hbm_parts().tolist()) | set(result.step.sram_parts().tolist())
    assert {"qkv", "attention", "ffn"} <= parts
