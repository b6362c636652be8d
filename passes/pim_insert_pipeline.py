"""`pim-insert-pipeline`: materialize the schedule of `pim-schedule` as signal/wait pairs (and
the issue order of its `pim.concurrent` GEMVs)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from hpim_ir.dialects import pim
from hpim_ir.errors import HpimError
from hpim_ir.passes.pim_schedule import CONCURRENT_ATTR, STAGE, overlap_allowed, stage_of
from hpim_ir.passes.pim_tile_hbm import GemvTile, from_dict_attr

GRANULARITIES = ("head", "tile", "none")


def _feeds_cache(transfer: pim.TransferOp) -> bool:
    """K and V: values the consumer appends to the KV cache (possibly after RoPE)."""
    pending = [transfer.result]
    while pending:
        value = pending.pop()
        for use in value.uses:
            if isinstance(use.operation, pim.KVAppendOp):
                return True
            if isinstance(use.operation, pim.RoPEOp):
                pending.extend(use.operation.results)
    return False


CONTEXT_PIECES = 4
"""Pieces the cached context of a KV cache in HBM streams to SRAM-PIM in, at tile
granularity: SRAM-PIM multiplies one piece while HBM-PIM reads the next."""


def pipeline_tiles(transfer: pim.TransferOp, granularity: str) -> int:
    """How many pieces the value crosses in: K and V produced by a tiled HBM GEMV are sent
    per head (the heads a channel computes one after the other) or per tile (one output
    group of every bank, the finest unit a bank PU completes); the context of a KV cache in
    HBM streams in `CONTEXT_PIECES` pieces at tile granularity; everything else whole."""
    producer = transfer.input.owner
    if isinstance(producer, pim.KVAppendOp):
        return CONTEXT_PIECES if granularity == "tile" else 1
    if (
        not isinstance(producer, pim.LinearOp)
        or producer.place != pim.HBM  # a GEMV on SRAM-PIM has no HBM tile to send pieces of
        or producer.tile is None
        or not _feeds_cache(transfer)
    ):
        return 1
    tile = from_dict_attr(GemvTile, producer.tile)
    if granularity == "head":  # a GEMV of fewer output groups than heads: one per group
        return max(1, min(tile.heads_per_channel, tile.groups))
    if granularity == "tile":
        return tile.groups
    return 1


def _first_consumer(transfer: pim.TransferOp, block: Block) -> Operation:
    """The first op of `block` that uses the transfer's result (or contains a use)."""
    users = {use.operation for use in transfer.result.uses}
    for op in block.ops:
        if op in users or any(inner in users for inner in op.walk()):
            return op
    raise HpimError(f"transfer {transfer} has no user in its block")


def _start_of_stage(block: Block, place: pim.PlaceAttr, consumer: Operation) -> Operation:
    """The first op of `block` on `place` in the consumer's stage: a serial wait goes before
    the segment that reads the value, never after the value's first use. A consumer with no
    stage (the layer loop, the return) is its own start."""
    if STAGE not in consumer.properties:
        return consumer
    stage = stage_of(consumer)

    def starts(op: Operation) -> bool:
        placed_here = op.properties.get("place") == place
        return placed_here and STAGE in op.properties and stage_of(op) == stage

    return next(op for op in block.ops if op is consumer or starts(op))


def _holds_back(op: Operation) -> bool:
    """Whether a concurrent GEMV issued after `op` on the in-order HBM-PIM stream would wait
    for it: an HBM-PIM wait stalls the stream, and HBM-PIM work may use the GEMV's channels
    (a cache append, a cache read, another GEMV). The readout of a GEMV's result and
    signals stay ahead of it: they are short, and moved behind it they would deliver their
    value only once it completes."""
    if isinstance(op, pim.WaitOp):
        return op.place == pim.HBM
    if isinstance(op, pim.TransferOp):
        return op.source == pim.HBM and not isinstance(op.input.owner, pim.LinearOp)
    if isinstance(op, pim.SignalOp | pim.GetWeightOp):
        return False
    return pim.is_placed(op) and op.properties["place"] == pim.HBM


def _issue_concurrent(linear: pim.LinearOp) -> None:
    """Move a `pim.concurrent` GEMV (and the reads of its weight and bias) before the first op
    after the last GEMV before it reading the same input that would hold it back
    (`_holds_back`), so the HBM-PIM stream issues it while that GEMV still computes. Its
    other operand is that GEMV's input, so the move keeps every value defined before its
    use."""
    block = linear.parent_block()
    assert block is not None
    ops = list(block.ops)
    at = ops.index(linear)
    previous = max(
        index
        for index, op in enumerate(ops[:at])
        if isinstance(op, pim.LinearOp) and op.place == pim.HBM and op.input == linear.input
    )
    held = [index for index in range(previous + 1, at) if _holds_back(ops[index])]
    if not held:
        return  # nothing between the two holds it back
    stall = ops[held[0]]
    between = ops[held[0] : at]
    reads = [v.owner for v in linear.operands if isinstance(v.owner, pim.GetWeightOp)]
    for op in [*(read for read in between if read in reads), linear]:
        op.detach()
        Rewriter.insert_op(op, InsertPoint.before(stall))


@dataclass(frozen=True)
class PimInsertPipelinePass(ModulePass):
    """Insert a `pim.signal` after every `pim.transfer` (on the producing subsystem) and a
    `pim.wait` on the consuming subsystem, each with a fresh token, following the schedule.

    With overlap (`pim.overlap`, the `hpim` policy) the wait goes right before the first op
    that reads the value; K and V cross in `tiles` pieces so SRAM-PIM transposes and appends
    K while HBM-PIM still generates it, and computes q.K^T while V is generated. Without
    overlap (`serial`) the wait goes before the first op of the consumer's stage, so nothing
    of a stage starts before all of its inputs have arrived, and everything crosses whole.

    Options:
    - `granularity` (default `tile`): `tile` sends K/V one output group of every bank at a
      time (the finest the bank PUs allow), and a KV cache in HBM streams its context in
      `CONTEXT_PIECES` pieces; `head` one head at a time (only channels that
      compute several heads get more than one piece); `none` sends everything whole (the
      subsystems still overlap where the schedule lets them).

    A GEMV `pim-schedule` marked `pim.concurrent` (its channels disjoint from the previous
    GEMV on its input: V beside K) moves, with its weight and bias reads, before the first
    HBM-PIM op after that GEMV that would hold it back: a wait (K's wait for its RoPE from
    SRAM-PIM, in front of K's cache append) or work that may use its channels (K's cache
    append and reads): the in-order HBM-PIM stream then issues it while the other GEMV still
    computes, instead of behind the wait and the cache traffic. K's readout and signal,
    on K's channels, stay ahead of it.

    Requires `pim-schedule` (the `stage` attributes) and, for tiling, `pim-tile-hbm`.
    """

    name = "pim-insert-pipeline"

    granularity: str = "tile"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.granularity not in GRANULARITIES:
            raise HpimError(
                "pim-insert-pipeline: granularity must be one of "
                f"{', '.join(GRANULARITIES)}, got {self.granularity!r}"
            )
        overlap = overlap_allowed(op)
        tokens = count()
        for transfer in [t for t in op.walk() if isinstance(t, pim.TransferOp)]:
            if STAGE not in transfer.properties:
                raise HpimError("pim-insert-pipeline needs the stages of pim-schedule")
            block = transfer.parent_block()
            assert block is not None
            tiles = pipeline_tiles(transfer, self.granularity) if overlap else 1
            token = next(tokens)
            Rewriter.insert_op(pim.SignalOp(token, transfer.source, tiles), InsertPoint.after(transfer))
            consumer = _first_consumer(transfer, block)
            if not overlap:
                consumer = _start_of_stage(block, transfer.destination, consumer)
            Rewriter.insert_op(pim.WaitOp(token, transfer.destination, tiles), InsertPoint.before(consumer))
            transfer.properties["tiles"] = IntegerAttr(tiles, 64)
        for linear in [g for g in op.walk() if CONCURRENT_ATTR in g.attributes]:
            _issue_concurrent(linear)
