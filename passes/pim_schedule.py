"""`pim-schedule`: the pipeline schedule of a partitioned module, recorded in attributes.

This is the analysis half of the Triton-style split: it decides, and `pim-insert-pipeline`
materializes. Nothing is moved or created here.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, UnitAttr
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass

from hpim_ir.dialects import pim
from hpim_ir.errors import HpimError
from hpim_ir.passes.pim_tile_hbm import GemvTile, from_dict_attr

STAGE = "stage"
OVERLAP_ATTR = "pim.overlap"
CONCURRENT_ATTR = "pim.concurrent"
"""Set on an HBM-PIM GEMV that may be issued right after the previous GEMV reading the same
input: their channels are disjoint, so the two compute at once (`pim-insert-pipeline`)."""


def overlap_allowed(module: ModuleOp) -> bool:
    """Whether the policy lets the subsystems overlap (`pim.overlap`, set by
    `convert-llm-to-pim`)."""
    flag = module.attributes.get(OVERLAP_ATTR)
    if not isinstance(flag, IntegerAttr):
        raise HpimError("module has no pim.overlap attribute; run convert-llm-to-pim first")
    return bool(flag.value.data)


def _stage_block(block: Block, entry_stage: int) -> None:
    stages: dict = {arg: entry_stage for arg in block.args}
    for op in block.ops:
        for region in op.regions:
            for inner in region.blocks:
                _stage_block(inner, entry_stage)
        if isinstance(op, pim.LayersOp):
            # The loop hands its hidden state on where it received it.
            stages[op.result] = stages.get(op.init, entry_stage)
            continue
        if not (pim.is_placed(op) or isinstance(op, pim.TransferOp)):
            continue
        stage = max((stages.get(v, entry_stage) for v in op.operands), default=entry_stage)
        if isinstance(op, pim.TransferOp):
            stage += 1  # crossing the link starts the consumer's next stage
        for result in op.results:
            stages[result] = stage
        op.properties[STAGE] = IntegerAttr(stage, 64)


def _disjoint(first: pim.LinearOp, second: pim.LinearOp) -> bool:
    """Whether two tiled GEMVs compute on no common channel."""
    a, b = (from_dict_attr(GemvTile, linear.tile) for linear in (first, second))
    return a.channel_hi <= b.channel_lo or b.channel_hi <= a.channel_lo


def _mark_concurrent(block: Block) -> None:
    """Mark each tiled HBM GEMV whose channels are disjoint from those of the last GEMV
    before it in the block that reads the same input (heads that fill the banks side by side,
    `pim-tile-hbm`)."""
    last: dict = {}  # input value -> the last tiled HBM GEMV reading it
    for op in block.ops:
        if not isinstance(op, pim.LinearOp) or op.place != pim.HBM or op.tile is None:
            continue
        previous = last.get(op.input)
        if previous is not None and _disjoint(previous, op):
            op.attributes[CONCURRENT_ATTR] = UnitAttr()
        last[op.input] = op


def stage_of(op: Operation) -> int:
    return op.properties[STAGE].value.data  # type: ignore[union-attr]


@dataclass(frozen=True)
class PimScheduleAnalysisPass(ModulePass):
    """Record the pipeline schedule: every placed op and transfer gets a `stage`.

    The stage of an op is the number of subsystem crossings (transfers) on the longest
    dependence chain that leads to it within its block (a layer body or the function). Ops of
    one stage on one subsystem form a *segment* that can run as soon as its inputs arrive. The
    schedule says when a consumer may start:

    - with overlap (`pim.overlap = true`, the `hpim` policy), each consumer waits for exactly
      the values it reads, just before it needs them: SRAM-PIM starts on K (and transposes it)
      while HBM-PIM still generates V, and q.K^T overlaps V's generation;
    - without overlap (`serial`), a segment starts only when *every* transfer into its stage
      has arrived: attention waits for Q, K and V, as in a strictly serial design.

    `pim-insert-pipeline` reads the stages and `pim.overlap` and materializes the
    synchronization.

    It also marks `pim.concurrent` an HBM-PIM GEMV whose channels are disjoint from those
    of the last GEMV before it that reads the same input (V beside K, K beside Q, as
    `pim-tile-hbm` places heads that fill the banks): `pim-insert-pipeline` issues it ahead
    of the HBM-PIM work between the two, so it computes while the other does. In program
    order, V would wait behind K's cache append (and, with RoPE, SRAM-PIM's RoPE of K
    before it), and its channels would idle through K's GEMV.
    """

    name = "pim-schedule"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        overlap_allowed(op)
        for inner in op.walk():
            if inner.name == "func.func":
                _stage_block(inner.regions[0].block, 0)
            for region in inner.regions:
                for block in region.blocks:
                    _mark_concurrent(block)
