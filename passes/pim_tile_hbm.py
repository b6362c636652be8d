"""`pim-tile-hbm`: tile every HBM-PIM GEMV over channels, banks and DRAM rows, and place
every weight in HBM.

The GEMV mapping (the paper's §compiler step 3, made concrete where it is silent):

- A channel computes a contiguous block of the output rows. Its banks work in lock-step under
  all-bank commands: output row `o` of the channel's block goes to bank `o % banks`, so each
  bank holds `groups = ceil(rows / banks)` output rows (a group = one output row per bank).
- A DRAM row of a bank holds `columns * column_bytes / 2` consecutive input-dimension weights
  of one output row (512 FP16 on HBM3). The input vector is cut into *segments* of that many
  values; segment `s` of group `g` is one DRAM row, so a GEMV is, per segment: write the
  segment's inputs into the global buffer (`wr_gb`), then for each group one `mac_ab` per
  column of the row. Partial sums stay in the bank PUs; the results are read out at the end.
- Q/K/V projections (whose results feed attention) are split *head-wise*: whole heads per
  channel when there are at least as many heads as channels, otherwise each head over
  `channels // heads` channels (its rows split evenly between them). The attention on the
  SRAM side then receives each head from its own channels, which is what the pipeline
  overlaps. Every other FC layer is split *row-wise* evenly over all channels.
- Head-wise GEMVs *fill the banks* instead (`fill`: by default every Q/K/V; `gqa` only the
  K and V of grouped-query attention, with fewer key/value heads than query heads): each
  head goes over only `min(channels // heads, ceil(head_dim / banks))` channels (up to
  `banks` rows a channel: the same output groups per bank on fewer channels), and each
  filled GEMV's channels follow the previous one's in the layer (from `channel_lo`) when
  they fit, else start at channel 0 again. Why: a channel's GEMV time is set by its input
  (one `mac_ab` per 16 inputs and output group, all banks in lock-step on one shared global
  buffer), not by how many of its banks hold a row. Spread over every channel, LLaMA-3-8B's
  K (8 heads of 128) puts 16 rows on each channel's 64 banks and takes as long as Q's 4096
  rows; on 16 channels of 64 rows it takes as long, and V computes at the same time on 16
  other channels (`pim-schedule` has it issued before K's cache traffic). Small MHA models
  gain the same way (OPT-350M's 16 heads of 64 rows: Q, K and V each on 16 channels of 64
  rows, side by side, rather than each head on 4 channels of 16); from OPT-2.7B on, every
  head fills its channels' banks under either mapping. `fill=none` keeps the paper's spread.
  Splitting a row's inputs over the idle banks (split-K) cannot do this: every bank
  multiplies the same broadcast input column.
- Channel loads differ by at most one head (head-wise) or one row (row-wise): a remainder is
  spread over the first channels, never dropped.

Weights are laid out layer-major in every bank: the rows of all layered weights of layer `l`
(and of its KV cache, when the cache is in HBM, sized for the model's maximum positions in
stripes of `CONTEXT_STRIPE_COLUMNS` columns, a row each, as a decode step streams it out)
follow those of layer `l - 1`, so one per-layer row stride locates any layer; non-layered
weights (embedding tables, the LM head) follow the last layer. A matrix is laid out for its
GEMV's tile (its channels, `dram_rows` per bank per layer) also where this module streams it
to SRAM-PIM, if its declaration is `gemv_layout` (a prefill of a policy whose decode step
multiplies it in HBM-PIM): both phases read it from the same channels. (Per-feature vectors
live where their op runs, so their rows, and the row bases after them, differ between the
phases; no phase reads the other's.) If the total exceeds the banks' rows the pass fails
with the bytes needed and available.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, SSAValue
from xdsl.passes import ModulePass

from hpim_ir.dialects import pim
from hpim_ir.errors import HpimError
from hpim_ir.hardware import HbmConfig, load_hardware

BYTES_FP16 = 2


def to_dict_attr(record: object, **extra: str | int) -> DictionaryAttr:
    """A dataclass of ints and strings as a DictionaryAttr (how tiles and placements are
    recorded in the IR)."""

    def attr(value: str | int) -> Attribute:
        return StringAttr(value) if isinstance(value, str) else IntegerAttr(value, 64)

    return DictionaryAttr({k: attr(v) for k, v in {**asdict(record), **extra}.items()})


FILL_BANKS = ("all", "gqa", "none")
"""`pim-tile-hbm{fill}`: which head-wise GEMVs fill the banks of fewer channels; the first is
the default of the pass, `hpim-lower`, `CompileOptions` and the CLI."""

TILED_FOR = "pim.tiled_for"
"""Module attribute: the machine each tiling pass tiled for (`{hbm = NAME, sram = NAME}`),
which `convert-pim-to-isa` must lower for (tiles of one machine on another would address
channels or cores it does not have, or leave some idle)."""


def record_tiled_for(module: ModuleOp, subsystem: str, hw_name: str) -> None:
    """Record in `TILED_FOR` that `subsystem`'s tiles are for the machine `hw_name`."""
    tiled = module.attributes.get(TILED_FOR)
    entries = dict(tiled.data) if isinstance(tiled, DictionaryAttr) else {}
    entries[subsystem] = StringAttr(hw_name)
    module.attributes[TILED_FOR] = DictionaryAttr(entries)


def from_dict_attr(cls: type, attr: DictionaryAttr):
    """The dataclass `cls` read back from a DictionaryAttr written by `to_dict_attr`;
    HpimError naming the entry if one is missing or of the wrong kind (hand-edited IR)."""
    values = {}
    for field in fields(cls):
        entry = attr.data.get(field.name)
        if entry is None and field.default is not MISSING:
            values[field.name] = field.default
            continue
        wanted = StringAttr if field.type in ("str", str) else IntegerAttr
        if not isinstance(entry, wanted):
            kind = "a string" if wanted is StringAttr else "an integer"
            found = "no such entry" if entry is None else f"got {entry}"
            raise HpimError(
                f"a {cls.__name__} dictionary needs '{field.name}' as {kind} ({found}): {attr}"
            )
        values[field.name] = entry.data if isinstance(entry, StringAttr) else entry.value.data
    return cls(**values)


@dataclass(frozen=True)
class GemvTile:
    """How one `out x in` GEMV is spread over HBM-PIM. Channels `[channel_lo, channel_lo +
    channels_hi)` compute `rows_hi` output rows each, the next `channels_lo` channels
    `rows_lo` each."""

    scheme: str  # "head" or "row"
    in_features: int
    out_features: int
    channel_lo: int  # the first channel (0 unless placed beside another GEMV, `fill_banks`)
    channels_hi: int
    rows_hi: int
    channels_lo: int
    rows_lo: int
    heads_per_channel: int  # head-wise: whole heads on a channel (0 if a head spans channels)
    channels_per_head: int  # head-wise: channels sharing one head (1 if whole heads)
    segments: int  # input segments (DRAM rows per output group)
    segment_cols: int  # columns per full segment (one global-buffer load)
    last_cols: int  # columns of the last segment
    groups: int  # output groups per bank on the busiest channel

    @property
    def channels(self) -> int:
        """How many channels compute the GEMV (from `channel_lo` on)."""
        return self.channels_hi + self.channels_lo

    @property
    def channel_hi(self) -> int:
        """One past the last channel."""
        return self.channel_lo + self.channels

    @property
    def dram_rows(self) -> int:
        """DRAM rows per bank per layer: every group holds every segment."""
        return self.groups * self.segments


def _split(total: int, parts: int) -> tuple[int, int, int, int]:
    """`total` into `parts` near-equal parts: (count of bigger, bigger, count of smaller,
    smaller); the smaller count is 0 when it divides evenly."""
    small, extra = divmod(total, parts)
    if extra == 0:
        return parts, small, 0, 0
    return extra, small + 1, parts - extra, small


def gemv_tile(
    out: int, inp: int, hbm: HbmConfig, heads: int | None = None, fill_banks: bool = False
) -> GemvTile:
    """The tile of an `out x in` GEMV from channel 0 on; `heads` (Q/K/V) asks for the
    head-wise split, `fill_banks` (GQA's K and V) for heads over as few channels as keep
    their output groups per bank (the module docstring)."""
    channels = hbm.total_channels
    values_per_column = hbm.column_bytes // BYTES_FP16
    segment_cols = min(hbm.columns, hbm.global_buffer_slots)
    segment_values = segment_cols * values_per_column
    segments = -(-inp // segment_values)
    last_cols = -(-(inp - (segments - 1) * segment_values) // values_per_column)
    if heads is not None and out % heads == 0:
        head_dim = out // heads
        if heads >= channels:
            n_hi, h_hi, n_lo, h_lo = _split(heads, channels)
            split = (n_hi, h_hi * head_dim, n_lo, h_lo * head_dim)
            per_channel, per_head = h_hi, 1
        else:
            per_head = channels // heads
            if fill_banks:
                per_head = min(per_head, -(-head_dim // hbm.banks_per_channel))
            n_hi, r_hi, n_lo, r_lo = _split(head_dim, per_head)
            split = (n_hi * heads, r_hi, n_lo * heads, r_lo)
            per_channel = 0
        scheme = "head"
    else:
        split = _split(out, min(out, channels))
        per_channel, per_head, scheme = 0, 1, "row"
    n_hi, rows_hi, n_lo, rows_lo = split
    return GemvTile(
        scheme=scheme,
        in_features=inp,
        out_features=out,
        channel_lo=0,
        channels_hi=n_hi,
        rows_hi=rows_hi,
        channels_lo=n_lo,
        rows_lo=rows_lo,
        heads_per_channel=per_channel,
        channels_per_head=per_head,
        segments=segments,
        segment_cols=segment_cols,
        last_cols=last_cols,
        groups=-(-rows_hi // hbm.banks_per_channel),
    )


def attention_heads(value: SSAValue) -> tuple[int, int] | None:
    """The query or key/value head count of the attention op `value` feeds (through
    transfers, RoPE and the cache append) and that op's query head count, or None if it
    feeds no attention."""
    pending, seen = [value], set()
    while pending:
        current = pending.pop()
        for use in current.uses:
            user = use.operation
            if user in seen:
                continue
            seen.add(user)
            if isinstance(user, (pim.AttentionScoresOp, pim.AttentionValuesOp)):
                query = isinstance(user, pim.AttentionScoresOp) and use.index == 0
                heads = user.num_heads if query else user.num_kv_heads
                return heads.value.data, user.num_heads.value.data
            if isinstance(user, (pim.TransferOp, pim.RoPEOp, pim.KVAppendOp)):
                pending.extend(user.results)
    return None


@dataclass(frozen=True)
class HbmPlacement:
    """Where a weight (or the KV cache) lives in every bank it uses: rows
    `[row_base + layer * layer_stride, + rows)` of channels `[channel_lo, channel_lo +
    channels)`. `layer_stride` is 0 for non-layered data."""

    row_base: int
    rows: int
    layer_stride: int
    channels: int
    channel_lo: int = 0


CONTEXT_STRIPE_COLUMNS = 8
"""Columns of every bank's row that hold one *stripe* of a KV cache streamed out to SRAM-PIM:
short enough that a short context does not read a whole page of every bank, long enough
that each activation serves several bursts."""


def context_stripes(values: int, channels: int, hbm: HbmConfig) -> tuple[int, int]:
    """(P, D): a context of `ctx` tokens of a cache whose tokens are `values` FP16 spread
    over `channels` channels fills ceil(ctx * P / D) stripes, each its own row of every bank
    of those channels (`lower_cache_append` reads them out)."""
    per_token = -(-values * BYTES_FP16 // channels)
    per_stripe = hbm.banks_per_channel * CONTEXT_STRIPE_COLUMNS * hbm.column_bytes
    divisor = math.gcd(per_token, per_stripe)
    return per_token // divisor, per_stripe // divisor


def _weight_decls(module: ModuleOp) -> dict[str, pim.WeightOp]:
    return {op.sym_name.data: op for op in module.ops if isinstance(op, pim.WeightOp)}


def _vector_rows(elements: int, hbm: HbmConfig) -> int:
    """Rows per bank for data spread evenly over every bank of the machine."""
    return -(-elements * BYTES_FP16 // (hbm.total_banks * hbm.row_bytes))


def _fit_error(needed_rows: int, hbm: HbmConfig, what: str) -> HpimError:
    bank_bytes = hbm.total_banks * hbm.row_bytes
    return HpimError(
        f"{what} do not fit in HBM: needs {needed_rows * bank_bytes:,} bytes "
        f"({needed_rows} rows per bank), {hbm.capacity_bytes:,} available "
        f"({hbm.rows} rows per bank)"
    )


@dataclass(frozen=True)
class PimTileHbmPass(ModulePass):
    """Tile every `pim.linear` on `#pim.hbm` (`tile` = a `GemvTile`) and give every
    HBM-resident weight and KV cache its `placement` (an `HbmPlacement`; a `gemv_layout`
    weight as its GEMV's tile lays it out): see the module docstring for the mapping.

    Options:
    - `hw` (default `hpim`): a hardware preset name or a TOML file.
    - `qkv` (default `head`): `head` splits Q/K/V head-wise as the paper does; `row` splits
      them row-wise like the other layers (balanced even when heads do not divide the
      channels, e.g. 40 heads on 64 channels: 80 rows per channel instead of 128).
    - `fill` (default `all`): which head-wise GEMVs *fill the banks* (module docstring):
      `all`, every Q/K/V (small MHA models too: OPT-350M's 16 heads on 16 channels each
      rather than 4 channels of 16 rows); `gqa`, only the key/value heads of grouped-query
      attention; `none`, none (every head spread over `channels // heads` channels, the
      paper's mapping).

    Fails (with the bytes needed and available) if the weights and an HBM-resident KV cache
    do not fit in the banks' rows.
    """

    name = "pim-tile-hbm"

    hw: str = "hpim"
    qkv: str = "head"
    fill: str = FILL_BANKS[0]

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.qkv not in ("head", "row"):
            raise HpimError(f"pim-tile-hbm: qkv must be 'head' or 'row', got {self.qkv!r}")
        if self.fill not in FILL_BANKS:
            raise HpimError(
                f"pim-tile-hbm: fill must be one of {', '.join(FILL_BANKS)}, got {self.fill!r}"
            )
        hw = load_hardware(self.hw)
        hbm = hw.hbm
        record_tiled_for(op, "hbm", hw.name)
        decls = _weight_decls(op)
        tiles: dict[str, GemvTile] = {}
        free_channel: dict[Block | None, int] = {}  # per block: after the last K/V filled
        for linear in op.walk():
            if not isinstance(linear, pim.LinearOp):
                continue
            name = pim.weight_source(linear).weight.string_value()
            if linear.place != pim.HBM and decls[name].gemv_layout is None:
                continue
            out, inp = linear.weight.type.get_shape()
            found = attention_heads(linear.result) if self.qkv == "head" else None
            heads, query_heads = found if found is not None else (None, None)
            fill = heads is not None and (
                self.fill == "all" or (self.fill == "gqa" and heads < query_heads)
            )
            tile = gemv_tile(out, inp, hbm, heads, fill)
            if fill:
                lo = free_channel.get(linear.parent_block(), 0)
                lo = lo if lo + tile.channels <= hbm.total_channels else 0
                tile = replace(tile, channel_lo=lo)
                free_channel[linear.parent_block()] = tile.channel_hi
            if linear.place == pim.HBM:
                linear.tile = to_dict_attr(tile)
            tiles[name] = tile  # the weight's layout (`gemv_layout`: also when streamed)

        layered, flat = [], []
        for name, decl in decls.items():
            if decl.place != pim.HBM:
                continue
            if name in tiles:
                rows = tiles[name].dram_rows
                channels = (tiles[name].channels, tiles[name].channel_lo)
            else:  # vectors (biases) and lookup-only tables: spread over every bank
                shape = decl.type.get_shape()
                per_layer = decl.num_elements // (shape[0] if decl.layered else 1)
                rows, channels = _vector_rows(per_layer, hbm), (hbm.total_channels, 0)
            (layered if decl.layered else flat).append((decl, rows, channels))

        # A KV cache in HBM is layered data too: each layer's K (V) for every position
        # follows that layer's weights, so one stride moves from layer to layer. It gets
        # the rows of its stripes (`context_stripes`), in which a decode step that streams
        # the context out to SRAM-PIM reads it; the same in every phase and policy, so that
        # a prefill and a decode compiled apart agree on where it is.
        for cache in op.ops:
            if isinstance(cache, pim.KVCacheOp) and cache.place == pim.HBM:
                _, capacity, width = cache.type.get_shape()
                per_ctx, div = context_stripes(width, hbm.total_channels, hbm)
                layered.append((cache, -(-capacity * per_ctx // div), (hbm.total_channels, 0)))

        stride = sum(rows for _, rows, _ in layered)
        layers = next((d.type.get_shape()[0] for d, _, _ in layered), 0)
        base = 0
        for decl, rows, channels in layered:
            decl.placement = to_dict_attr(HbmPlacement(base, rows, stride, *channels), on="hbm")
            base += rows
        base = layers * stride
        for decl, rows, channels in flat:
            decl.placement = to_dict_attr(HbmPlacement(base, rows, 0, *channels), on="hbm")
            base += rows
        if base > hbm.rows:
            what = "the model's weights" + (
                " and its KV cache" if any(isinstance(d, pim.KVCacheOp) for d, _, _ in layered) else ""
            )
            raise _fit_error(base, hbm, what)
