"""HBM-PIM side of `convert-pim-to-isa`: `pim` ops placed on `#pim.hbm` as `hbm_isa`
macro-instructions.

A module of helpers (not a pass): `convert-pim-to-isa` walks the program and calls these for
the HBM stream, and the SRAM-side helpers for the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr
from xdsl.ir import Attribute, Operation

from hpim_ir.dialects import hbm_isa, pim
from hpim_ir.dialects.interned import int_attr, str_attr
from hpim_ir.hardware import HbmConfig
from hpim_ir.passes.pim_tile_hbm import (
    BYTES_FP16,
    CONTEXT_STRIPE_COLUMNS,
    GemvTile,
    HbmPlacement,
    context_stripes,
    from_dict_attr,
)
from hpim_ir.sim.hbm.program import split_count


def data_attr(data: dict[str, str | int | float]) -> DictionaryAttr:
    """An instruction's `data` attribute (what it computes, docs/functional.md): strings,
    64-bit integers and f64 floats."""

    def attr(value: str | int | float) -> Attribute:
        if isinstance(value, str):
            return str_attr(value)
        if isinstance(value, float):
            return FloatAttr(value, 64)
        return int_attr(value)

    return DictionaryAttr({key: attr(value) for key, value in data.items()})


def _bursts(values: int, hbm: HbmConfig) -> int:
    """32 B bursts to carry `values` FP16 numbers."""
    return -(-values * BYTES_FP16 // hbm.column_bytes)


@dataclass(frozen=True)
class ChannelGroup:
    """Channels `[lo, hi)` of a GEMV tile, each computing `rows` output rows."""

    lo: int
    hi: int
    rows: int


def channel_groups(tile: GemvTile) -> list[ChannelGroup]:
    """The tile's channels that compute `rows_hi` rows, then (if any) those that compute
    `rows_lo`."""
    split = tile.channel_lo + tile.channels_hi
    groups = [ChannelGroup(tile.channel_lo, split, tile.rows_hi)]
    if tile.channels_lo:
        groups.append(ChannelGroup(split, tile.channel_hi, tile.rows_lo))
    return groups


def split_groups(groups: int, pieces: int) -> list[tuple[int, int]]:
    """`groups` output groups in `pieces` near-equal consecutive pieces: (first, count)."""
    pieces = min(pieces, groups)
    base, extra = divmod(groups, pieces)
    spans, first = [], 0
    for piece in range(pieces):
        count = base + (1 if piece < extra else 0)
        spans.append((first, count))
        first += count
    return spans


def row_pieces(tile: GemvTile, banks: int, pieces: int) -> np.ndarray:
    """For each output row of a tiled GEMV sent on in `pieces` pieces, the piece of
    `lower_gemv` that delivers it: the channels compute consecutive blocks of rows, the
    `o`-th row of a block is in output group `o // banks`, and a piece is a span of
    `split_groups`. A consumer reading a slice of the result waits for the pieces of its rows
    (rows of one head may come from several channels, late in each)."""
    spans = split_groups(tile.groups, pieces)
    piece_of_group = np.repeat(np.arange(len(spans)), [count for _, count in spans])
    within = np.concatenate(
        [np.tile(np.arange(group.rows), group.hi - group.lo) for group in channel_groups(tile)]
    )
    return piece_of_group[within // banks]


def lower_gemv(
    linear: pim.LinearOp,
    placement: HbmPlacement,
    hbm: HbmConfig,
    pieces: int,
    tokens: list[int] | None,
    names: tuple[str, str],
) -> list[Operation]:
    """A tiled GEMV: per piece of output groups, per input segment, fill the global buffer and
    stream the piece's DRAM rows through the bank PUs; then read the piece's results out and,
    if a consumer waits per piece, raise that piece's token (`tokens`, one per piece).

    Row `row_base + segment * groups + group` of a bank holds `segment` of its `group`-th
    output row (segment-major), so a piece's rows for one segment are consecutive and one
    `gemv` macro covers them. Biases are preloaded into the PU accumulators with the inputs
    (no extra commands). Rows are those of layer 0; the stream's `row_stride` moves them on
    per layer.

    `names` are the input's and the result's value names: each instruction's `data` says
    which slice of the input a `load_gb` fills the global buffer with (`at`), which weight
    rows a `gemv` multiplies (channel c of the range computes output rows `out + (c - ch_lo)
    * rows` on, bank b of group g row `g * banks + b` of them; input columns from `at`;
    segment 0 preloads the bias), and which value a `readout` delivers.
    """
    tile = from_dict_attr(GemvTile, linear.tile)
    source, result = names
    weight = linear.weight.owner.weight.string_value()
    bias = {"bias": linear.bias.owner.weight.string_value()} if linear.bias is not None else {}
    segment_values = tile.segment_cols * hbm.column_bytes // BYTES_FP16
    banks = hbm.banks_per_channel
    ops: list[Operation] = []
    spans = split_groups(tile.groups, pieces)
    for index, (first, count) in enumerate(spans):
        for group in channel_groups(tile):
            out = (group.lo - tile.channel_lo) * tile.rows_hi  # rows of the channels before
            group_count = -(-group.rows // banks)
            if first >= group_count:
                continue
            count_here = min(count, group_count - first)
            for segment in range(tile.segments):
                cols = tile.segment_cols if segment < tile.segments - 1 else tile.last_cols
                at = segment * segment_values
                ops.append(hbm_isa.LoadGbOp(ch_lo=group.lo, ch_hi=group.hi, cols=cols))
                ops[-1].attributes["data"] = data_attr({"src": source, "at": at})
                ops.append(
                    hbm_isa.GemvOp(
                        ch_lo=group.lo,
                        ch_hi=group.hi,
                        row=placement.row_base + segment * tile.groups + first,
                        rows=count_here,
                        cols=cols,
                    )
                )
                gemv = {"w": weight, "out": out, "rows": group.rows, "group": first, "at": at}
                ops[-1].attributes["data"] = data_attr({**gemv, **(bias if segment == 0 else {})})
            outputs = min(count_here * banks, group.rows - first * banks)
            ops.append(hbm_isa.ReadoutOp(ch_lo=group.lo, ch_hi=group.hi, n=_bursts(outputs, hbm)))
            ops[-1].attributes["data"] = data_attr(
                {"dst": result, "size": tile.out_features, "per_ctx": 0}
            )
        if tokens is not None:
            ops.append(hbm_isa.SignalOp(tok=tokens[index]))
    return ops


def _stream_rows(bytes_per_channel: int, hbm: HbmConfig) -> tuple[int, int]:
    """`bytes_per_channel` as (rows, columns) of a `read`/`write` over every bank of a
    channel: whole rows of every bank while they fill, else one row of fewer columns."""
    per_row = hbm.banks_per_channel * hbm.row_bytes
    if bytes_per_channel >= per_row:
        return -(-bytes_per_channel // per_row), hbm.columns
    per_column = hbm.banks_per_channel * hbm.column_bytes
    return 1, max(1, -(-bytes_per_channel // per_column))


def lower_cache_append(
    values: int, placement: HbmPlacement, hbm: HbmConfig, read_context: bool,
    tokens: list[int] | None = None, read_data: dict | None = None,
) -> list[Operation]:
    """A KV cache in HBM: the step's K (or V) row, `values` FP16 spread over the cache's
    channels, written at the end of the cache; then, if the SRAM-PIM cores compute the
    attention (`read_context`; attention in HBM-PIM reads the cache in place), the cached
    context read out towards them: `ceil(ctx * bytes / (banks x stripe))` stripes of every
    bank, bound per step (`ctx` is the symbolic context length), none at context 0; with
    `tokens`, in one piece per token, piece i the stripes i, i + pieces, ... (together exactly
    the whole's). Each read's `data` is `read_data` with its `piece`, `pieces` and the whole's
    stripes, ceil(ctx * `rows_per_ctx` / `rows_div`). The cores
    stream `ctx + 1` keys (values): the cached ones and the step's own, which the controller
    forwards from the GEMV's readout it writes, so it is not read back. Rows are layer 0's;
    the cache is laid out layer-major with the weights, so the section's `row_stride` moves
    them to each layer's."""
    channels = placement.channels
    per_token = -(-values * BYTES_FP16 // channels)
    rows, cols = _stream_rows(per_token, hbm)
    write = hbm_isa.WriteOp(ch_lo=0, ch_hi=channels, row=placement.row_base, rows=rows, cols=cols)
    if not read_context:
        return [write]
    # The context is read in stripes (`context_stripes`, as `pim-tile-hbm` placed them).
    whole = (0, *context_stripes(values, channels, hbm), 0)
    # Streamed in pieces (one per token of `tokens`), each raising its token when read.
    # Piece i reads stripes i, i + pieces, ...: exactly its share of the whole's stripes at
    # every context (`split_count`), where each piece rounding up on its own would read up
    # to `pieces` times the stripes of a short context. The cache keeps the stripes of
    # piece i together, from the i-th of `pieces` equal parts of its rows, so that each
    # piece is one `read` of consecutive rows from a row fixed at compile time.
    pieces = len(tokens) if tokens else 1
    region = -(-placement.rows // pieces)
    ops: list[Operation] = [write]
    for piece, (rows, per_ctx, ctx_div, ctx_off) in enumerate(split_count(*whole, pieces)):
        offset = {"ctx_off": ctx_off} if ctx_off else {}
        ops.append(
            hbm_isa.ReadOp(
                ch_lo=0, ch_hi=channels, row=placement.row_base + piece * region, rows=rows,
                cols=CONTEXT_STRIPE_COLUMNS, per_ctx=per_ctx, ctx_div=ctx_div, **offset,
            )
        )
        stripes = {"rows_per_ctx": whole[1], "rows_div": whole[2]}
        data = {**(read_data or {}), "piece": piece, "pieces": pieces, **stripes}
        ops[-1].attributes["data"] = data_attr(data)
        if tokens:
            ops.append(hbm_isa.SignalOp(tok=tokens[piece]))
    return ops


def lower_attention_product(
    heads: int, head_dim: int, values_in: int, out_bursts: tuple[int, int, int],
    placement: HbmPlacement, hbm: HbmConfig,
) -> list[Operation]:
    """q.K^T or s.V computed in HBM-PIM beside a KV cache kept there (AttAcc-style): heads
    spread over the channels, each channel streams its heads' cache rows through the bank
    PUs against the input in the global buffer, then reads the results out.

    A head's cache (`ctx + 1` tokens of `head_dim` FP16) is spread over every bank of its
    channel: ceil((ctx + 1) * head_dim / (banks * values per row)) rows. `values_in` is the
    input of one head (q: head_dim; the probabilities: one segment, reloaded per segment in
    reality, which costs wr_gb commands only); `out_bursts` is (constant, per_ctx, ctx_div) of
    the 32 B bursts one head's result takes."""
    channels = min(heads, placement.channels)
    per_channel = -(-heads // channels)
    values_per_row = hbm.row_bytes // BYTES_FP16
    per_row = hbm.banks_per_channel * values_per_row
    divisor = math.gcd(head_dim, per_row)
    slots = min(hbm.global_buffer_slots, -(-values_in * BYTES_FP16 // hbm.column_bytes))
    constant, per_ctx, ctx_div = out_bursts
    ops: list[Operation] = []
    for _ in range(per_channel):
        ops.append(hbm_isa.LoadGbOp(ch_lo=0, ch_hi=channels, cols=slots))
        ops.append(
            hbm_isa.GemvOp(
                ch_lo=0, ch_hi=channels, row=placement.row_base, rows=1, cols=hbm.columns,
                per_ctx=head_dim // divisor, ctx_div=per_row // divisor,
            )
        )
        readout = {"per_ctx": per_ctx, "ctx_div": ctx_div} if per_ctx else {}
        ops.append(hbm_isa.ReadoutOp(ch_lo=0, ch_hi=channels, n=constant, **readout))
    return ops


def stream_span(
    op: type[hbm_isa.ReadOp | hbm_isa.WriteOp], placement: HbmPlacement, offset: int,
    nbytes: int, hbm: HbmConfig,
) -> tuple[list[Operation], int]:
    """`nbytes` read (written) at byte `offset` per channel of data `placement` lays out
    over every bank of its channels, from its row (of layer 0): the rest of a row begun,
    whole rows, then the columns of a last partial row (a macro starts at column 0: a span
    that begins mid-row reads as many columns from the row's start, which takes the same
    time); and the offset after the span."""
    channels, lo, row_base = placement.channels, placement.channel_lo, placement.row_base
    per_channel = -(-nbytes // channels)
    per_row = hbm.banks_per_channel * hbm.row_bytes
    per_column = hbm.banks_per_channel * hbm.column_bytes
    position, end = offset, offset + per_channel
    ops: list[Operation] = []
    while position < end:
        row, within = divmod(position, per_row)
        if within == 0 and end - position >= per_row:
            rows = (end - position) // per_row
            ops.append(
                op(ch_lo=lo, ch_hi=lo + channels, row=row_base + row, rows=rows, cols=hbm.columns)
            )
            position += rows * per_row
        else:
            upto = min(end, (row + 1) * per_row)
            cols = -(-(upto - position) // per_column)
            ops.append(op(ch_lo=lo, ch_hi=lo + channels, row=row_base + row, rows=1, cols=cols))
            position = upto
    return ops, end


def lower_lookup(
    values: int, tokens: int, placement: HbmPlacement, hbm: HbmConfig
) -> list[Operation]:
    """An embedding lookup: `tokens` rows of `values` FP16 read in normal mode from the table
    `placement` lays out. Each row of the table lies in one channel, over its banks, the
    rows dealt round the table's channels, so the rows come from min(tokens, channels)
    channels at once, ceil(tokens / channels) from each. Which rows they are is known only
    at run time (the tokens), so the reads are placed at the table's first rows: a span of
    a bank's rows takes as long wherever it lies (`stream_span`)."""
    channels = min(tokens, placement.channels)
    per_channel = -(-tokens // channels) * values * BYTES_FP16
    reads, _ = stream_span(
        hbm_isa.ReadOp, replace(placement, channels=channels), 0, per_channel * channels, hbm
    )
    return reads
