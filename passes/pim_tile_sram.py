"""`pim-tile-sram`: distribute the SRAM-PIM work over the cores.

Attention is distributed by heads, in the paper's three cases (§compiler step 3):

- `heads == cores`: one query head per core;
- `heads > cores`: each core takes a contiguous block of `ceil(heads / cores)` heads and runs
  them one after the other (*phases*); contiguous blocks keep the query heads of one
  grouped-query group on one core, so they share its K/V;
- `cores > heads`: a head is split over `cores // heads` cores, each taking a slice of the
  context (keys and values); the softmax then needs the global max and sum of each head, which
  the cores of a head combine with an all-gather over the NoC.

Vector work (norms, activations, residual adds, RoPE) is split element-wise over all cores.
A KV cache resident in SRAM-PIM lives with the heads: each core holds the K/V rows of the heads
it serves, and its size at the longest context the program must support is checked against
the SRAM capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from hpim_ir.dialects import pim
from hpim_ir.errors import HpimError
from hpim_ir.hardware import Hardware, load_hardware
from hpim_ir.passes.pim_tile_hbm import record_tiled_for, to_dict_attr
from hpim_ir.sim.sram.timing import pim_bytes

_ATTENTION = (pim.AttentionScoresOp, pim.AttentionValuesOp, pim.SoftmaxOp, pim.KVAppendOp)


@dataclass(frozen=True)
class AttentionTile:
    """How the heads of one attention are spread over the cores."""

    case: str  # "one-per-core", "phases" or "split"
    cores: int  # cores in use
    heads: int
    kv_heads: int
    heads_per_core: int  # query heads a core runs, one after the other (the phases)
    kv_heads_per_core: int  # key/value heads a core holds
    cores_per_head: int  # cores sharing one head's context (> 1 only in the split case)


def attention_tile(heads: int, kv_heads: int, cores: int) -> AttentionTile:
    group = heads // kv_heads
    if heads >= cores:
        per_core = -(-heads // cores)
        used = -(-heads // per_core)
        # Core c runs query heads [c * per_core, (c + 1) * per_core), which read key/value
        # heads h // group: a core's heads may straddle two groups (6 heads of 2 groups on 3
        # cores: core 1 runs heads 2 and 3, of key/value heads 0 and 1).
        kv_per_core = max(
            (min((c + 1) * per_core, heads) - 1) // group - c * per_core // group + 1
            for c in range(used)
        )
        return AttentionTile(
            case="one-per-core" if heads == cores else "phases",
            cores=used,
            heads=heads,
            kv_heads=kv_heads,
            heads_per_core=per_core,
            kv_heads_per_core=kv_per_core,
            cores_per_head=1,
        )
    per_head = cores // heads
    return AttentionTile(
        case="split",
        cores=per_head * heads,
        heads=heads,
        kv_heads=kv_heads,
        heads_per_core=1,
        kv_heads_per_core=1,
        cores_per_head=per_head,
    )


@dataclass(frozen=True)
class VectorTile:
    """Element-wise work split evenly over the cores."""

    case: str
    cores: int


@dataclass(frozen=True)
class SramPlacement:
    """A KV cache resident in SRAM-PIM: `bytes_per_core` at `max_context` tokens."""

    cores: int
    max_context: int
    bytes_per_core: int


def _cores(hw: Hardware) -> int:
    if hw.sram is None:
        raise HpimError(f"hardware {hw.name!r} has no [sram] section: it has no SRAM-PIM cores")
    return hw.sram.cores


def _heads(op: pim.KVAppendOp) -> tuple[int, int]:
    """Head counts of the attention a cache append feeds."""
    for use in op.result.uses:
        user = use.operation
        if isinstance(user, (pim.AttentionScoresOp, pim.AttentionValuesOp)):
            return user.num_heads.value.data, user.num_kv_heads.value.data
    raise HpimError(f"'{op.name}' feeds no attention op")


@dataclass(frozen=True)
class PimTileSramPass(ModulePass):
    """Record a `tile` on every op placed on `#pim.sram`: an `AttentionTile` on the attention
    ops (scores, softmax, values, the cache append), a `VectorTile` on the rest; and a
    `placement` on every SRAM-resident KV cache (see the module docstring).

    Options:
    - `hw` (default `hpim`): a hardware preset name or a TOML file (needs an `[sram]` part).
    - `max-context` (default: the model's maximum positions): the longest context the program
      must hold; an SRAM-resident KV cache must fit it, or the pass fails with the bytes
      needed and available per core.
    """

    name = "pim-tile-sram"

    hw: str = "hpim"
    max_context: int = 0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.max_context < 0:
            raise HpimError(
                f"pim-tile-sram: max-context must be a number of tokens (0: the model's "
                f"maximum), got {self.max_context}"
            )
        hw = load_hardware(self.hw)
        cores = _cores(hw)
        record_tiled_for(op, "sram", hw.name)
        tiles: dict[str, AttentionTile] = {}
        for inner in op.walk():
            if inner.properties.get("place") != pim.SRAM or not pim.is_placed(inner):
                continue
            if isinstance(inner, pim.GetWeightOp):
                continue
            if isinstance(inner, pim.SoftmaxOp) and not isinstance(
                inner.input.owner, pim.AttentionScoresOp
            ):
                # Scores computed elsewhere (attention in HBM-PIM) arrive as a plain vector.
                inner.tile = to_dict_attr(VectorTile("vector", cores))
            elif isinstance(inner, _ATTENTION):
                heads = (
                    _heads(inner)
                    if isinstance(inner, pim.KVAppendOp)
                    else _attention_heads(inner)
                )
                tile = attention_tile(*heads, cores)
                inner.tile = to_dict_attr(tile)
                if isinstance(inner, pim.KVAppendOp):
                    tiles[inner.cache.string_value()] = tile
            else:
                inner.tile = to_dict_attr(VectorTile("vector", cores))
        caches = [c for c in op.ops if isinstance(c, pim.KVCacheOp) and c.place == pim.SRAM]
        placements = [self._place_cache(cache, tiles, hw) for cache in caches]
        needed = sum(p.bytes_per_core for p in placements)
        available = hw.sram.pim.capacity_bytes
        if needed > available:
            context = placements[0].max_context
            raise HpimError(
                f"the KV cache does not fit in SRAM-PIM at context {context}: needs "
                f"{needed:,} bytes per core ({', '.join(f'@{c.sym_name.data} {p.bytes_per_core:,}' for c, p in zip(caches, placements))}), "
                f"{available:,} available per core in the PIM macros (place it in HBM: "
                "kv-cache=hbm)"
            )
        for cache, placement in zip(caches, placements):
            cache.placement = to_dict_attr(placement, on="sram")

    def _place_cache(
        self, cache: pim.KVCacheOp, tiles: dict[str, AttentionTile], hw: Hardware
    ) -> SramPlacement:
        layers, capacity, width = cache.type.get_shape()
        context = self.max_context or capacity
        if context > capacity:
            raise HpimError(
                f"max-context {context} exceeds @{cache.sym_name.data}'s {capacity} positions"
            )
        tile = tiles.get(cache.sym_name.data) or attention_tile(1, 1, _cores(hw))
        # A core holds, for every layer, its key/value heads over (its share of) the
        # context, laid out in the macros as the engine pads them.
        head_width = width // tile.kv_heads
        rows = layers * tile.kv_heads_per_core * head_width
        columns = -(-context // tile.cores_per_head)
        per_core = int(pim_bytes(np.array([rows]), np.array([columns]), hw.sram.pim)[0])
        return SramPlacement(tile.cores, context, per_core)


def _attention_heads(op) -> tuple[int, int]:
    if isinstance(op, pim.SoftmaxOp):
        producer = op.input.owner
        return producer.num_heads.value.data, producer.num_kv_heads.value.data
    return op.num_heads.value.data, op.num_kv_heads.value.data
