"""`convert-pim-to-isa`: the partitioned, tiled, scheduled `pim` program as the two
instruction streams of HPIM: `hbm_isa` for the HBM-PIM controller, `sram_isa` for the cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hpim_ir.dialects import hbm_isa, pim, sram_isa
from hpim_ir.dialects.interned import str_attr
from hpim_ir.passes.lower_hbm import (
    data_attr,
    lower_attention_product,
    lower_cache_append,
    lower_gemv,
    lower_lookup,
    row_pieces,
)
from hpim_ir.passes.pim_tile_hbm import (
    TILED_FOR,
    BYTES_FP16,
    GemvTile,
    HbmPlacement,
    from_dict_attr,
)
from hpim_ir.passes.pim_tile_sram import AttentionTile
from hpim_ir.sim.sram.program import CTX, Affine, ProgramBuilder, Space, SramOp, VcuFn
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from hpim_ir.errors import HpimError
from hpim_ir.hardware import Hardware, load_hardware

VECTOR_FNS = {
    pim.ReluOp: VcuFn.RELU,
    pim.GeluOp: VcuFn.GELU,
    pim.SiluOp: VcuFn.SILU,
    pim.AddOp: VcuFn.ADD,
    pim.MulOp: VcuFn.MUL,
    pim.LayerNormOp: VcuFn.LAYERNORM,
    pim.RMSNormOp: VcuFn.RMSNORM,
    pim.RoPEOp: VcuFn.ROPE,
}


def _elements(value: SSAValue) -> int:
    """Static element count of a tensor value (its symbolic dimension counted as 1)."""
    count = 1
    for dim in value.type.get_shape():
        count *= max(dim, 1)
    return count


def _symbolic(value: SSAValue) -> bool:
    return any(dim < 0 for dim in value.type.get_shape())


STATS_BYTES = 8
"""What a core contributes to the all-gather of a norm's or a split head's softmax statistics
(a partial sum and sum of squares, or a max and a sum: 2 x FP32), out of the buffer they are
computed from: such a buffer holds at least this much per core."""

PARTS = ("qkv", "attention", "attention_proj", "ffn", "other")
"""The parts of a layer the simulator reports time for (the paper's breakdown). Every ISA
instruction carries the part it works for as its `part` attribute."""

_PROJECTION_PARTS = {
    "q_proj": "qkv",
    "k_proj": "qkv",
    "v_proj": "qkv",
    "o_proj": "attention_proj",
    "fc1": "ffn",
    "fc2": "ffn",
    "gate_proj": "ffn",
    "up_proj": "ffn",
    "down_proj": "ffn",
}


def part_of(op: Operation) -> str:
    """The part of the layer a `pim` op belongs to; a transfer's signal belongs to the
    value's producer, its wait to the value's first consumer."""
    if isinstance(op, pim.SignalOp):
        return part_of(op.prev_op.input.owner)
    if isinstance(op, pim.WaitOp):
        return part_of(op.next_op)
    if isinstance(op, pim.LinearOp):
        return _PROJECTION_PARTS.get(weight_name(op), "other")
    if isinstance(
        op, (pim.KVAppendOp, pim.AttentionScoresOp, pim.SoftmaxOp, pim.AttentionValuesOp, pim.RoPEOp)
    ):
        return "attention"
    if isinstance(op, (pim.ReluOp, pim.GeluOp, pim.SiluOp, pim.MulOp)):
        return "ffn"
    return "other"


def weight_name(linear: pim.LinearOp) -> str:
    """The name of the weight a linear multiplies by."""
    return pim.weight_source(linear).weight.string_value()


@dataclass
class Section:
    """The two streams of one section (a prologue, a repeated layer body, an epilogue), the
    part each SRAM record works for and its `data` (what `convert-pim-to-isa` turns into an
    `hbm_isa.stream` and an `sram_isa.stream`)."""

    name: str
    repeat: int
    row_stride: int
    hbm: list[Operation] = field(default_factory=list)
    sram: ProgramBuilder = field(default_factory=ProgramBuilder)
    sram_parts: list[str] = field(default_factory=list)
    sram_data: dict[int, dict] = field(default_factory=dict)  # record -> its `data`


class _Lowering:
    """Walks the sections' blocks in program order and emits both streams.

    One instance serves every section, so SRAM buffer numbers are unique across the program
    and a value made in one section (the hidden state) keeps its buffer in the next."""

    def __init__(self, hw: Hardware, tokens: dict[int, pim.TransferOp]):
        self.hw = hw
        self.hbm_cfg = hw.hbm
        self.cores = hw.sram.cores
        self.tokens = tokens
        self.buffers: dict[SSAValue, int] = {}
        self.cache_buffers: dict[str, int] = {}
        self.next_buffer = 0
        self.section = Section("", 1, 0)
        self.isa_tokens: dict[int | Operation, list[int]] = {}  # pim token or streamed linear
        self.stats = -1  # the buffer all-gathers of norm and softmax statistics land in
        self.pending_context: dict[SSAValue, list[int]] = {}  # streamed context -> tokens
        self.names: dict[SSAValue, str] = {}

    # Data semantics (the `data` attribute, docs/functional.md) ------------------------------

    def name(self, value: SSAValue) -> str:
        return value_name(self.names, value)

    def note(self, **data) -> None:
        """Give the last SRAM record emitted its `data`."""
        self.section.sram_data[len(self.section.sram.rows) - 1] = data

    def pieces(self, token: int, tiles: int) -> list[int]:
        """The ISA tokens of `pim` token `token` sent in `tiles` pieces: one per piece, so
        every ISA token is raised once per layer."""
        if token not in self.isa_tokens:
            first = sum(len(t) for t in self.isa_tokens.values())
            self.isa_tokens[token] = list(range(first, first + tiles))
        return self.isa_tokens[token]

    # SRAM buffers ---------------------------------------------------------------------------

    def fresh(self) -> int:
        self.next_buffer += 1
        return self.next_buffer - 1

    def buffer(
        self, value: SSAValue, bytes_per_core: int | Affine | None = None,
        layout: dict | None = None,
    ) -> int:
        """The activation-memory buffer of `value` (allocated on first use, by default with
        its `layout`'s bytes; its `data` names the value, its length (`n` elements, times
        `ctx + 1` if `per_ctx`) and which part each core holds: `slice_of`, or `layout`)."""
        if bytes_per_core is None:
            bytes_per_core = self.layout(value)[1]
        if value not in self.buffers:
            self.buffers[value] = self.fresh()
            self.section.sram.add(
                SramOp.ALLOC, (0, self.cores), kind=Space.AM, dst=self.buffers[value],
                sizes=[bytes_per_core],
            )
            length = {"n": _elements(value), "per_ctx": int(_symbolic(value))}
            self.note(value=self.name(value), **length, **(layout or self.slice_of(value)))
        return self.buffers[value]

    def slice_of(self, value: SSAValue) -> dict:
        """Which elements of `value` core k holds: `count` (the buffer's bytes / 2) from
        element `((k * mul) // div) * unit` (`unit` -1: `count`). An even split, or the heads
        the core serves (query heads; the key/value heads they read)."""
        tile = _attention_tile_of(value)
        if tile is None:
            return {"mul": 1, "div": 1, "unit": -1}
        role, tile = tile
        head_dim = _elements(value) // (tile.heads if role == "query" else tile.kv_heads)
        return _head_slice(role, tile, head_dim)

    def vector_share(self, value: SSAValue) -> int | Affine:
        """Bytes per core of a vector split evenly over every core; a tensor whose length is
        the context (attention scores) has `ctx + 1` along it."""
        static = _elements(value)
        if _symbolic(value):
            return ((CTX + 1) * static * BYTES_FP16).ceildiv(self.cores)
        # Whole FP16 elements per core, at least the statistics a norm all-gathers from them
        # (a vector shorter than 4 elements a core leaves the last cores padding only).
        return max(-(-static // self.cores), STATS_BYTES // BYTES_FP16) * BYTES_FP16

    def layout(self, value: SSAValue) -> tuple[tuple[int, int], int]:
        """The cores holding `value` and the bytes each holds: the heads a core serves for
        attention operands and results (queries, keys, values, their RoPE, the attention
        output), else an even split over every core."""
        tile = _attention_tile_of(value)
        if tile is None:
            return (0, self.cores), self.vector_share(value)
        role, tile = tile
        heads = tile.heads if role == "query" else tile.kv_heads
        per_core = tile.heads_per_core if role == "query" else tile.kv_heads_per_core
        return (0, tile.cores), _elements(value) // heads * per_core * BYTES_FP16

    def allocate_stats(self) -> None:
        """The buffer of gathered statistics (`STATS_BYTES` from every core), allocated once
        for the whole program."""
        self.stats = self.fresh()
        self.section.sram.add(
            SramOp.ALLOC, (0, self.cores), kind=Space.AM, dst=self.stats,
            sizes=[STATS_BYTES * self.cores],
        )

    def allocate_caches(self, appends: list[pim.KVAppendOp], layers: int) -> None:
        """PIM buffers for the resident KV caches: every layer's K^T (V) of the heads a core
        serves, as wide as the context (split heads: their share of it)."""
        for append in appends:
            name = append.cache.string_value()
            if name in self.cache_buffers or append.place != pim.SRAM:
                continue
            tile = from_dict_attr(AttentionTile, append.tile)
            width = tile.kv_heads_per_core * _elements(append.value) // tile.kv_heads
            context = (CTX + 1).ceildiv(tile.cores_per_head)
            self.cache_buffers[name] = self.fresh()
            sizes = [layers * width, context] if name == "key_cache" else [context, layers * width]
            self.section.sram.add(
                SramOp.ALLOC, (0, tile.cores), kind=Space.PIM, dst=self.cache_buffers[name],
                sizes=sizes,
            )
            head_dim = _elements(append.value) // tile.kv_heads
            self.note(cache=name, heads=tile.kv_heads_per_core, **_head_slice("kv", tile, head_dim))

    # The walk -------------------------------------------------------------------------------

    def lower_ops(self, section: Section, ops: list[Operation]) -> None:
        self.section = section
        for op in ops:
            self.lower(op)

    def lower_layer_body(self, section: Section, layers: pim.LayersOp) -> None:
        """The body, with the hidden state kept in the loop's buffer: the block argument and
        the yielded value share it. Values made in the body are freed at its end."""
        self.section = section
        block = layers.body.block
        state = self.buffers[layers.init]
        self.buffers[block.args[1]] = state
        yielded = block.last_op.operands[0]
        self.buffers[yielded] = state
        outer = set(self.buffers.values())
        for op in block.ops:
            self.lower(op)
        # Free each buffer made in the body once (values may share a buffer: softmax works
        # in place).
        for number in sorted(set(self.buffers.values()) - outer):
            section.sram.add(SramOp.FREE, (0, self.cores), dst=number)
        self.buffers[layers.result] = state

    def lower(self, op: Operation) -> None:
        """Lower one op and tag what it emitted with its part."""
        section = self.section
        hbm_before = len(section.hbm)
        self.lower_op(op)
        part = str_attr(part_of(op))
        for emitted in section.hbm[hbm_before:]:
            emitted.attributes["part"] = part
        section.sram_parts.extend([part.data] * (len(section.sram.rows) - len(section.sram_parts)))

    def lower_op(self, op: Operation) -> None:
        if isinstance(op, (pim.GetWeightOp, pim.TransferOp, func.ReturnOp, pim.YieldOp)):
            return  # weights are addressed by the tiles; transfers by their sync pair
        if isinstance(op, pim.SignalOp):
            return self.lower_signal(op)
        if isinstance(op, pim.WaitOp):
            return self.lower_wait(op)
        place = op.properties.get("place")
        if place == pim.HBM:
            return self.lower_hbm(op)
        if place == pim.SRAM:
            return self.lower_sram(op)
        raise HpimError(f"convert-pim-to-isa: cannot lower '{op.name}'")

    # Sync and transfers ---------------------------------------------------------------------

    def lower_signal(self, op: pim.SignalOp) -> None:
        token, tiles = op.token.value.data, op.tiles.value.data if op.tiles else 1
        transfer = self.tokens[token]
        if op.place != transfer.source:
            raise HpimError(
                f"convert-pim-to-isa: pim.signal {token} is on #{op.place.name}, but its "
                f"transfer leaves #{transfer.source.name} (the producer raises the token)"
            )
        if isinstance(transfer.input.owner, pim.GetWeightOp):
            return  # a weight streams in tiles with its linear, which syncs them itself
        if op.place == pim.HBM:
            if tiles == 1:  # a tiled producer raised its tokens itself, piece by piece
                (isa_token,) = self.pieces(token, 1)
                self.section.hbm.append(hbm_isa.SignalOp(tok=isa_token))
            return
        # SRAM -> HBM: the value leaves over the link, then the token is raised.
        source = self.buffers[transfer.input]
        cores, share = self.layout(transfer.input)
        self.section.sram.add(SramOp.STORE, cores, src0=source, sizes=[share])
        self.note(dst=self.name(transfer.input))
        (isa_token,) = self.pieces(token, 1)
        self.section.sram.add(SramOp.SIGNAL, (0, self.cores), tok=isa_token)

    def lower_wait(self, op: pim.WaitOp) -> None:
        token, tiles = op.token.value.data, op.tiles.value.data if op.tiles else 1
        if op.place != self.tokens[token].destination:
            raise HpimError(
                f"convert-pim-to-isa: pim.wait {token} is on #{op.place.name}, but its "
                f"transfer arrives on #{self.tokens[token].destination.name} (the consumer "
                "waits)"
            )
        if isinstance(self.tokens[token].input.owner, pim.GetWeightOp):
            return  # a weight streams in tiles with its linear (`lower_signal`)
        if op.place == pim.HBM:
            (isa_token,) = self.pieces(token, 1)
            self.section.hbm.append(hbm_isa.WaitOp(tok=isa_token))
            return
        transfer = self.tokens[token]
        if _streamed_cache(transfer.result):
            # The context of a cache in HBM: the attention product streams it in itself.
            # Whole, it is waited for here (where the schedule put the wait); in pieces, the
            # product waits for each piece before streaming it (`attention_product`).
            tokens = self.pieces(token, tiles)
            if tiles == 1:
                self.section.sram.add(SramOp.WAIT, (0, self.cores), tok=tokens[0])
                tokens = []
            self.pending_context[transfer.result] = tokens
            return
        # HBM -> SRAM: each core's part arrives over the link in `tiles` loads; each load
        # first waits for the pieces holding its rows that no earlier load waited for.
        cores, share = self.layout(transfer.result)
        target = self.buffer(transfer.result, share)
        tokens = self.pieces(token, tiles)
        waited = 0
        for index, last in enumerate(self.last_pieces(transfer, cores, share, tiles)):
            for piece in tokens[waited : last + 1]:
                self.section.sram.add(SramOp.WAIT, (0, self.cores), tok=piece)
            waited = max(waited, last + 1)
            piece_bytes = share if tiles == 1 else _load_bytes(share, index, tiles)
            if piece_bytes:  # a part of fewer entries than loads leaves the last ones empty
                self.section.sram.add(SramOp.LOAD, cores, dst=target, sizes=[piece_bytes])
                self.note(src=self.name(transfer.input), piece=index, pieces=tiles)

    def last_pieces(
        self, transfer: pim.TransferOp, cores: tuple[int, int], share: int | Affine, tiles: int
    ) -> list[int]:
        """For each of the `tiles` loads of a value, the last piece of its producer it reads
        (load i brings entries `[i * per, (i + 1) * per)` of every core's part, `slice_of`;
        K and V from a tiled GEMV arrive in the pieces of `row_pieces`, anything else whole).
        The last load waits for every piece: the value is whole once it is done."""
        if tiles == 1:
            return [0]
        producer = transfer.input.owner
        assert isinstance(producer, pim.LinearOp) and producer.tile is not None
        tile = from_dict_attr(GemvTile, producer.tile)
        piece_of_row = row_pieces(tile, self.hbm_cfg.banks_per_channel, tiles)
        part, count = self.slice_of(transfer.result), share // BYTES_FP16
        per = -(-count // tiles)
        unit = count if part["unit"] < 0 else part["unit"]
        first = (np.arange(*cores) * part["mul"]) // part["div"] * unit
        elements = first[:, None] + np.arange(per * tiles)[None, :]  # [core, entry]
        inside = (elements < len(piece_of_row)) & (np.arange(per * tiles) < count)
        pieces = np.where(inside, piece_of_row[np.where(inside, elements, 0)], -1)
        last = pieces.reshape(len(first), tiles, per).max(axis=(0, 2))
        last[-1] = tiles - 1
        return [int(piece) for piece in last]

    # HBM-PIM --------------------------------------------------------------------------------

    def lower_hbm(self, op: Operation) -> None:
        if isinstance(op, pim.LinearOp):
            placement = hbm_placement(op, op.weight.owner.weight)
            token, pieces = self.pipelined_token(op)
            names = (self.name(op.input), self.name(op.result))
            self.section.hbm.extend(lower_gemv(op, placement, self.hbm_cfg, pieces, token, names))
            return
        if isinstance(op, (pim.EmbeddingOp, pim.PositionEmbeddingOp)):
            placement = hbm_placement(op, op.table.owner.weight)
            data = data_attr(lookup_data(op, self.name(op.result)))
            for read in lower_lookup(_elements(op.result), 1, placement, self.hbm_cfg):
                read.attributes["data"] = data
                self.section.hbm.append(read)
            return
        if isinstance(op, pim.KVAppendOp):
            placement = hbm_placement(op, op.cache)
            streamed = any(isinstance(use.operation, pim.TransferOp) for use in op.result.uses)
            tokens, _ = self.pipelined_token(op)
            cache = op.cache.string_value()
            ops = lower_cache_append(
                _elements(op.value), placement, self.hbm_cfg, streamed, tokens,
                {"cache": cache, "split": _context_split(op)},
            )
            ops[0].attributes["data"] = data_attr({"cache": cache, "src": self.name(op.value)})
            self.section.hbm.extend(ops)
            return
        if isinstance(op, (pim.AttentionScoresOp, pim.AttentionValuesOp)):
            cache = op.keys if isinstance(op, pim.AttentionScoresOp) else op.values
            placement = hbm_placement(op, cache.owner.cache)
            heads = op.num_heads.value.data
            if isinstance(op, pim.AttentionScoresOp):
                head_dim = _elements(op.query) // heads
                # ctx + 1 FP16 scores per head: 1 + ceil(ctx / 16) bursts.
                bursts = (1, 1, hbm_bursts_per_value(self.hbm_cfg))
                values_in = head_dim
            else:
                head_dim = _elements(op.result) // heads
                bursts = (-(-head_dim * BYTES_FP16 // self.hbm_cfg.column_bytes), 0, 1)
                values_in = self.hbm_cfg.global_buffer_slots * self.hbm_cfg.column_bytes // BYTES_FP16
            ops = lower_attention_product(
                heads, head_dim, values_in, bursts, placement, self.hbm_cfg
            )
            self.annotate_attention_product(op, ops)
            self.section.hbm.extend(ops)
            return
        raise HpimError(f"convert-pim-to-isa: '{op.name}' on #pim.hbm is not supported")

    def annotate_attention_product(self, op: Operation, ops: list[Operation]) -> None:
        """`data` of q.K^T or s.V in HBM-PIM: in round i, channel c computes query head
        `c * rounds + i` against the cache it reads; the readouts deliver the result."""
        scores = isinstance(op, pim.AttentionScoresOp)
        cache = (op.keys if scores else op.values).owner.cache.string_value()
        source = self.name(op.query if scores else op.probs)
        rounds = len(ops) // 3
        common = {
            "kind": "scores" if scores else "values", "cache": cache, "rounds": rounds,
            "heads": op.num_heads.value.data, "kv_heads": op.num_kv_heads.value.data,
        }
        if scores:
            common["scale"] = op.scale.value.data
        for index, (load, gemv, readout) in enumerate(zip(ops[::3], ops[1::3], ops[2::3])):
            load.attributes["data"] = data_attr({"src": source, "at": 0})
            gemv.attributes["data"] = data_attr({**common, "round": index})
            readout.attributes["data"] = data_attr(
                {"dst": self.name(op.result), "size": _elements(op.result), "per_ctx": int(scores)}
            )

    def pipelined_token(self, op: Operation) -> tuple[list[int] | None, int]:
        """The ISA tokens (one per piece) and the piece count of the transfer that sends
        this GEMV's result on in pieces, or (None, 1)."""
        for use in op.result.uses:
            transfer = use.operation
            if isinstance(transfer, pim.TransferOp) and transfer.tiles is not None:
                tiles = transfer.tiles.value.data
                for token, candidate in self.tokens.items():
                    if candidate is transfer and tiles > 1:
                        return self.pieces(token, tiles), tiles
        return None, 1

    # SRAM-PIM -------------------------------------------------------------------------------

    def lower_sram(self, op: Operation) -> None:
        sram, cores = self.section.sram, (0, self.cores)
        if type(op) in VECTOR_FNS:
            cores, share = self.layout(op.results[0])
            inputs = [self.buffers[v] for v in op.operands if v in self.buffers]
            target = self.buffer(op.results[0], share)
            norm = isinstance(op, (pim.LayerNormOp, pim.RMSNormOp))
            if norm:
                # Statistics of a vector split over the cores: each core's partial sums
                # (2 x 4 B) are combined over the NoC before normalizing.
                sram.add(
                    SramOp.ALLGATHER, cores, dst=self.stats, src0=inputs[0], sizes=[STATS_BYTES]
                )
                self.note(stat="moments")
            sram.add(
                SramOp.VCU, cores, kind=VECTOR_FNS[type(op)], dst=target, src0=inputs[0],
                src1=inputs[1] if len(inputs) > 1 else -1, sizes=[_elements_of_share(share)],
            )
            data = vector_data(op)
            if data:
                self.note(**data)
            return
        lowerings = {
            pim.LinearOp: self.lower_linear,
            pim.KVAppendOp: self.lower_append,
            pim.AttentionScoresOp: self.lower_scores,
            pim.SoftmaxOp: self.lower_softmax,
            pim.AttentionValuesOp: self.lower_values,
        }
        if type(op) not in lowerings:
            raise HpimError(f"convert-pim-to-isa: '{op.name}' on #pim.sram is not supported yet")
        lowerings[type(op)](op)

    def lower_linear(self, op: pim.LinearOp) -> None:
        """A GEMV on SRAM-PIM whose weight stays in HBM: the prefill's streamed linear at one
        token (`lower_streamed_linear`: HBM-PIM reads the weight's tiles in normal mode from
        the rows `pim-tile-hbm` placed it in, spread over every bank, layer-major; the cores
        load their columns and multiply on the TCUs), in this step's streams, buffers and
        tokens."""
        from hpim_ir.passes.lower_sram_linear import (
            StreamedOutput,
            Streams,
            linear_tiling,
            linear_values,
            lower_streamed_linear,
        )

        weight = pim.weight_source(op)
        decl = declaration(op, weight.weight)
        if weight.place != pim.HBM or decl.placement is None:
            where = "has no placement (run pim-tile-hbm first)" if weight.place == pim.HBM else (
                f"is on {weight.place} (weights of linears live in HBM)"
            )
            raise HpimError(
                "convert-pim-to-isa: a pim.linear on #pim.sram streams its weight from HBM; "
                f"@{weight_name(op)} {where}"
            )
        placement = from_dict_attr(HbmPlacement, decl.placement)
        inputs, outputs = _elements(op.input), _elements(op.result)
        x, y = self.buffers[op.input], self.buffer(op.result)
        streams = Streams(self.hw)
        streams.section, streams.part, streams.names = self.section, part_of(op), self.names
        streams.next_buffer = self.next_buffer
        streams.next_token = first = sum(len(t) for t in self.isa_tokens.values())
        # The step's own buffers (a few vectors and the scores per core) are not counted:
        # the weight tiles get half the activation memory, the step keeps the rest.
        budget = self.hw.sram.activation_memory_bytes // 2
        tcu = (self.hw.sram.tcu.rows, self.hw.sram.tcu.cols)
        what = f"@{weight_name(op)}"
        tiling = linear_tiling(1, inputs, (outputs,), self.cores, tcu, budget, what)
        output = StreamedOutput(y, placement, linear_values(op))
        lower_streamed_linear(streams, x, [output], tiling, what)
        self.next_buffer = streams.next_buffer
        self.isa_tokens[op] = list(range(first, streams.next_token))

    def lower_append(self, op: pim.KVAppendOp) -> None:
        """The step's K (transposed into a K^T column) or V row into the cache's macros."""
        tile = from_dict_attr(AttentionTile, op.tile)
        width = tile.kv_heads_per_core * _elements(op.value) // tile.kv_heads
        cores = (0, tile.cores)
        source = self.buffers[op.value]
        cache = self.cache_buffers[op.cache.string_value()]
        if op.cache.string_value() == "key_cache":
            staged = self.buffer(op.result, width * BYTES_FP16)
            self.section.sram.add(SramOp.TRANSPOSE, cores, dst=staged, src0=source, sizes=[1, width])
            self.section.sram.add(SramOp.MACRO_WRITE, cores, dst=cache, src0=staged, sizes=[width, 1])
        else:
            self.section.sram.add(SramOp.MACRO_WRITE, cores, dst=cache, src0=source, sizes=[1, width])

    def lower_scores(self, op: pim.AttentionScoresOp) -> None:
        tile = from_dict_attr(AttentionTile, op.tile)
        head_dim = _elements(op.query) // tile.heads
        query = self.buffers[op.query]
        per_head = 2 * tile.heads_per_core
        # Room for ceil((ctx + 1) / cores_per_head) FP16 scores of each head the core runs,
        # and, when a head is split, for the statistics its cores all-gather (at ctx 0 a core
        # holds one score, 2 bytes).
        split = tile.cores_per_head
        stats = STATS_BYTES * split if split > 1 else 0
        room = Affine(per_head, per_head * split + stats, split)
        layout = {"heads_per_core": tile.heads_per_core, "cores_per_head": tile.cores_per_head}
        scores = self.buffer(op.result, room, layout)
        for phase in range(tile.heads_per_core):
            self.attention_product(
                op.keys, tile, dst=scores, src0=query,
                sizes=[head_dim, (CTX + 1).ceildiv(tile.cores_per_head)],
                data={"kind": "scores", "phase": phase, "scale": op.scale.value.data,
                      "group": tile.heads // tile.kv_heads},
            )

    def lower_softmax(self, op: pim.SoftmaxOp) -> None:
        if op.input not in self.buffers or not isinstance(op.input.owner, pim.AttentionScoresOp):
            # Scores computed in HBM-PIM arrive split over every core: one vector softmax.
            cores, share = self.layout(op.input)
            scores = self.buffers[op.input]
            self.buffers[op.result] = scores
            self.section.sram.add(
                SramOp.VCU, cores, kind=VcuFn.SOFTMAX, dst=scores, src0=scores,
                sizes=[_elements_of_share(share)],
            )
            self.note(heads=op.input.type.get_shape()[0])
            return
        tile = from_dict_attr(AttentionTile, op.tile)
        scores = self.buffers[op.input]
        self.buffers[op.result] = scores
        for phase in range(tile.heads_per_core):
            if tile.cores_per_head > 1:  # the head's global max and sum, over its cores
                self.per_head_group(
                    tile, SramOp.ALLGATHER, self.stats, scores, STATS_BYTES,
                    {"stat": "softmax", "phase": phase},
                )
            self.section.sram.add(
                SramOp.VCU, (0, tile.cores), kind=VcuFn.SOFTMAX, dst=scores, src0=scores,
                sizes=[(CTX + 1).ceildiv(tile.cores_per_head)],
            )
            self.note(phase=phase)

    def lower_values(self, op: pim.AttentionValuesOp) -> None:
        tile = from_dict_attr(AttentionTile, op.tile)
        head_dim = _elements(op.result) // tile.heads
        probs = self.buffers[op.probs]
        out = self.buffer(op.result)
        for phase in range(tile.heads_per_core):
            self.attention_product(
                op.values, tile, dst=out, src0=probs,
                sizes=[(CTX + 1).ceildiv(tile.cores_per_head), head_dim],
                data={"kind": "values", "phase": phase, "group": tile.heads // tile.kv_heads},
            )
            if tile.cores_per_head > 1:  # the head's partial outputs, summed
                self.per_head_group(tile, SramOp.REDUCE, out, out, head_dim * BYTES_FP16, {})

    def attention_product(
        self, cache: SSAValue, tile: AttentionTile, dst: int, src0: int, sizes, data: dict
    ) -> None:
        """q.K^T or s.V of one head per core: an `mvm` on the resident cache's PIM buffer, or
        a `stream_mvm` that streams a cache kept in HBM through the macros. `data`: the
        product (`kind`), the phase (which of the core's heads), the scores' scale."""
        cores = (0, tile.cores)
        name = cache.owner.input.owner.cache.string_value() if _streamed_cache(cache) else None
        if _streamed_cache(cache):
            # Piece by piece as HBM-PIM reads them: wait, then stream that share of the
            # context (the context is the symbolic size of the product).
            tokens = self.pending_context[cache]
            if not tokens:
                self.section.sram.add(SramOp.STREAM_MVM, cores, dst=dst, src0=src0, sizes=sizes)
                self.note(**data, cache=name, piece=0, pieces=1)
                return
            # Piece i streams every `pieces`-th key of each core's slice from key i on: its
            # exact share (`Affine.piece`), empty while the slice has at most i keys.
            pieces = len(tokens)
            for piece, token in enumerate(tokens):
                split = [
                    size.piece(piece, pieces) if isinstance(size, Affine) and size.a else size
                    for size in sizes
                ]
                self.section.sram.add(SramOp.WAIT, (0, self.cores), tok=token)
                self.section.sram.add(SramOp.STREAM_MVM, cores, dst=dst, src0=src0, sizes=split)
                self.note(**data, cache=name, piece=piece, pieces=pieces)
            return
        resident = self.cache_buffers[cache.owner.cache.string_value()]
        self.section.sram.add(SramOp.MVM, cores, dst=dst, src0=src0, src1=resident, sizes=sizes)
        self.note(**data)

    def per_head_group(
        self, tile: AttentionTile, op: SramOp, dst: int, src0: int, size: int, data: dict
    ) -> None:
        """A collective among the cores sharing each head (`data`: what it combines)."""
        for head in range(tile.heads):
            first = head * tile.cores_per_head
            self.section.sram.add(
                op, (first, first + tile.cores_per_head), dst=dst, src0=src0, sizes=[size]
            )
            if data:
                self.note(**data)


def value_name(names: dict[SSAValue, str], value: SSAValue) -> str:
    """The name of a logical value in `data` attributes: `v<N>` (numbered in `names`), shared
    by a transfer's input and result (the same values on both sides of the link)."""
    while isinstance(value.owner, pim.TransferOp):
        value = value.owner.input
    if value not in names:
        names[value] = f"v{len(names)}"
    return names[value]


def vector_data(op: Operation, **position) -> dict:
    """The `data` of a vector function's `vcu`: a norm's parameters (SRAM-resident weights,
    sliced as the input), RoPE's heads and theta (`position`: a prefill's `first` token's
    position; a decode step's is the step's); other functions need none."""
    if isinstance(op, (pim.LayerNormOp, pim.RMSNormOp)):
        params = {"w": op.gamma.owner.weight.string_value(), "eps": op.epsilon.value.data}
        if isinstance(op, pim.LayerNormOp):
            params["b"] = op.beta.owner.weight.string_value()
        return params
    if isinstance(op, pim.RoPEOp):
        return {"heads": op.num_heads.value.data, "theta": op.theta.value.data, **position}
    return {}


def lookup_data(op: pim.EmbeddingOp | pim.PositionEmbeddingOp, dst: str, **rows) -> dict:
    """The `data` of an embedding lookup's `read`s: the rows of `table` indexed by the
    token (a position, plus `offset`) delivered as `dst`; `rows` (a prefill's `first`,
    `tokens`): the prompt's tokens from `first` on, else the step's token."""
    table = op.table.owner.weight.string_value()
    if isinstance(op, pim.EmbeddingOp):
        return {"dst": dst, "table": table, "index": "token", "offset": 0, **rows}
    return {"dst": dst, "table": table, "index": "position", "offset": op.offset.value.data, **rows}


def hbm_bursts_per_value(hbm) -> int:
    """FP16 values per 32 B burst."""
    return hbm.column_bytes // BYTES_FP16


def _streamed_cache(value: SSAValue) -> bool:
    """A cache's context arriving from HBM (a KV cache kept in HBM)."""
    owner = value.owner
    return isinstance(owner, pim.TransferOp) and isinstance(owner.input.owner, pim.KVAppendOp)


def _context_split(append: pim.KVAppendOp) -> int:
    """Over how many cores the SRAM-PIM attention that streams a cache in HBM splits each
    head's context (1: no SRAM-PIM consumer)."""
    for use in append.result.uses:
        if isinstance(use.operation, pim.TransferOp):
            for inner in use.operation.result.uses:
                consumer = inner.operation
                attention = isinstance(consumer, (pim.AttentionScoresOp, pim.AttentionValuesOp))
                if attention and consumer.tile is not None:
                    return from_dict_attr(AttentionTile, consumer.tile).cores_per_head
    return 1


def _attention_tile_of(value: SSAValue) -> tuple[str, AttentionTile] | None:
    """For a value on its way into attention (through transfers, RoPE, the cache append) or
    out of it: its role ("query" or "kv") and the attention's tile."""
    owner = value.owner
    if isinstance(owner, pim.AttentionValuesOp) and owner.tile is not None:
        return "query", from_dict_attr(AttentionTile, owner.tile)
    pending = [value]
    while pending:
        current = pending.pop()
        for use in current.uses:
            user = use.operation
            if isinstance(user, pim.AttentionScoresOp) and user.tile is not None:
                role = "query" if use.index == 0 else "kv"
                return role, from_dict_attr(AttentionTile, user.tile)
            if isinstance(user, pim.KVAppendOp) and user.tile is not None:
                return "kv", from_dict_attr(AttentionTile, user.tile)
            if isinstance(user, (pim.TransferOp, pim.RoPEOp)):
                pending.extend(user.results)
    return None


def _head_slice(role: str, tile: AttentionTile, head_dim: int) -> dict:
    """The heads core k serves (`slice_of`): its query heads, or the key/value heads they
    read (grouped-query attention: query head h reads key/value head h // group)."""
    group = tile.heads // tile.kv_heads
    if tile.cores_per_head > 1:  # core k runs query head k // cores_per_head
        div = tile.cores_per_head * (1 if role == "query" else group)
        return {"mul": 1, "div": div, "unit": head_dim}
    div = 1 if role == "query" else group
    return {"mul": tile.heads_per_core, "div": div, "unit": head_dim}


def _require_tiles_and_sync(module: ModuleOp, tokens: dict[int, pim.TransferOp]) -> None:
    """The passes before this one ran: every HBM GEMV has its `pim-tile-hbm` tile, every
    attention op on SRAM-PIM its `pim-tile-sram` tile, every transfer its
    `pim-insert-pipeline` signal (`tokens`). Otherwise one message naming the missing pass."""
    attention = (pim.KVAppendOp, pim.AttentionScoresOp, pim.SoftmaxOp, pim.AttentionValuesOp)
    synced = {id(transfer) for transfer in tokens.values()}
    for op in module.walk():
        if isinstance(op, pim.LinearOp) and op.place == pim.HBM and op.tile is None:
            missing = "a pim.linear on #pim.hbm has no tile; run pim-tile-hbm"
        elif isinstance(op, attention) and op.place == pim.SRAM and op.tile is None:
            missing = f"'{op.name}' on #pim.sram has no tile; run pim-tile-sram"
        elif isinstance(op, pim.TransferOp) and id(op) not in synced:
            missing = (
                "a pim.transfer has no pim.signal after it; run pim-schedule and "
                "pim-insert-pipeline"
            )
        else:
            continue
        raise HpimError(f"convert-pim-to-isa: {missing} first")


def _load_bytes(share: int, index: int, loads: int) -> int:
    """Bytes load `index` of `loads` brings of a core's part of `share` bytes (K or V from a
    tiled GEMV, whose size does not depend on the context): entries `[index * per, (index +
    1) * per)` of its FP16 entries (`last_pieces`), so that the loads add up to the part."""
    count = share // BYTES_FP16
    per = -(-count // loads)
    return max(0, min(per, count - index * per)) * BYTES_FP16


def _elements_of_share(share: int | Affine) -> int | Affine:
    """FP16 elements in a share of bytes."""
    if isinstance(share, Affine):
        return share.ceildiv(BYTES_FP16)
    return share // BYTES_FP16


def declaration(op: Operation, ref) -> Operation:
    from xdsl.traits import SymbolTable

    decl = SymbolTable.lookup_symbol(op, ref)
    assert decl is not None
    return decl


def hbm_placement(op: Operation, ref) -> HbmPlacement:
    """Where `pim-tile-hbm` laid out the data `ref` (a weight or a KV cache in HBM) names,
    seen from `op`; an error naming it if that pass has not run."""
    placement = declaration(op, ref).placement
    if placement is None:
        raise HpimError(
            f"convert-pim-to-isa: @{ref.string_value()} in HBM has no placement; run "
            "pim-tile-hbm first"
        )
    return from_dict_attr(HbmPlacement, placement)


@dataclass(frozen=True)
class ConvertPimToIsaPass(ModulePass):
    """Lower a `pim` decode step (after `pim-tile-hbm`, `pim-tile-sram`, `pim-schedule` and
    `pim-insert-pipeline`) to one `hbm_isa.stream` and one `sram_isa.stream` per section: the
    prologue (embeddings), the decoder layers (`repeat = layers`; HBM rows move on by the
    weights' layer stride), the epilogue (final norm, LM head).

    HBM-PIM: a tiled GEMV becomes, per piece of output groups and input segment, `load_gb` +
    `gemv` on each channel range, then `readout`; a K/V GEMV the SRAM side waits for per piece
    raises its token after each piece. An embedding lookup reads the token's row out.
    SRAM-PIM: values split over the cores live in activation-memory buffers; a value arriving
    from HBM-PIM is one `load` per piece, each after the `wait`s for the pieces that hold
    the rows it brings to any core (a channel computing two heads delivers the second in its
    last pieces), one leaving is `store` + `signal`; vector ops are `vcu` functions (norms
    first combine their statistics with an all-gather); K is transposed and written as a
    K^T column of the resident cache, V as a row; q.K^T and s.V are `mvm`s on the cache's
    PIM buffer, one per head a core runs, sized by the symbolic context (`ctx + 1` keys); a
    head split over cores all-gathers its softmax statistics and reduces its partial outputs.

    What each instruction computes on is recorded for functional execution: a decode step's
    (and a prefill's) instructions carry a `data` attribute (which weight rows a `gemv`
    multiplies, which slice of which value a `load_gb` or `load` brings, which value a
    `readout` or `store` delivers, which value and part of it a buffer holds, ...;
    docs/functional.md has the table) and the module's `hpim.logits` names the value the
    program returns. Timing ignores both.

    Options:
    - `hw` (default `hpim`): hardware preset or TOML file.
    - `all_logits` (default false): a prefill computes the LM head for every prompt token
      (an epilogue per chunk; functional execution, `hpim run`), not only for the last one.

    A KV cache in HBM: HBM-PIM writes the step's K and V rows at the end of the cache and
    reads the cached context out (a `read` whose row count grows with `ctx`, none at context
    0), and SRAM-PIM streams it and the step's own K/V (`ctx + 1` keys) through its macros
    (`stream_mvm`) instead of multiplying a resident matrix. Pipelined, both sides go piece
    by piece, each piece exactly its share: piece i of n reads every n-th stripe of the whole
    context from stripe i on (`ctx P / D off Q`) and streams every n-th key of each core's
    slice from key i on, so the pieces move exactly what the whole would at every context.

    A linear on SRAM-PIM (`attacc`, `pnm`): its weight stays in HBM where `pim-tile-hbm`
    placed it (spread over every bank, layer-major) and streams in tiles, as in a prefill
    (`lower_streamed_linear`, one token); the transfer bringing the weight has no sync of its
    own (the tiles carry theirs).

    Attention in HBM-PIM (`hbm-only`): q.K^T and s.V run in the bank PUs beside the cache
    (`load_gb` + a `gemv` whose rows grow with `ctx`, then `readout`); the softmax runs on
    SRAM-PIM.

    A prefill (func @prefill) is lowered by `hpim_ir.passes.lower_sram_linear` (its module
    docstring): in chunks of the prompt, every projection a TCU GEMM on SRAM-PIM with its
    weight streamed from HBM in normal mode, double-buffered, and attention per head on the
    TCUs; `pim-schedule`'s and `pim-insert-pipeline`'s sync is not used (the streamed tiles
    carry their own). An op the lowering cannot handle is an error naming it.
    """

    name = "convert-pim-to-isa"

    hw: str = "hpim"
    all_logits: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        hw = load_hardware(self.hw)
        if hw.sram is None:
            raise HpimError(f"hardware {hw.name!r} has no SRAM-PIM part to lower to")
        tiled = op.attributes.pop(TILED_FOR, None)
        for subsystem, name in (tiled.data.items() if isinstance(tiled, DictionaryAttr) else ()):
            if name.data != hw.name:
                raise HpimError(
                    f"convert-pim-to-isa{{hw={self.hw}}} lowers for {hw.name!r}, but "
                    f"pim-tile-{subsystem} tiled the module for {name.data!r}; give the "
                    "passes the same hw"
                )
        function = next((f for f in op.ops if isinstance(f, func.FuncOp)), None)
        if function is None or function.sym_name.data not in ("decode_step", "prefill"):
            raise HpimError(
                "convert-pim-to-isa lowers a decode step or a prefill (func @decode_step or "
                "@prefill)"
            )
        if function.sym_name.data == "prefill":
            from hpim_ir.passes.lower_sram_linear import lower_prefill

            sections = lower_prefill(op, function, hw, self.all_logits)
        else:
            tokens = {
                signal.token.value.data: signal.prev_op
                for signal in op.walk()
                if isinstance(signal, pim.SignalOp)
            }
            _require_tiles_and_sync(op, tokens)
            sections = self.sections(function, op, hw, tokens)
        for child in list(op.ops):
            child.detach()
            child.erase()
        for section in sections:
            op.body.block.add_op(
                hbm_isa.StreamOp(
                    section.hbm, section=section.name, repeat=section.repeat,
                    row_stride=section.row_stride,
                )
            )
            section.sram_parts.extend(["other"] * (len(section.sram.rows) - len(section.sram_parts)))
            stream = sram_isa.ops_from_program(section.sram.build())
            for index, (instruction, part) in enumerate(
                zip(stream.body.block.ops, section.sram_parts, strict=True)
            ):
                instruction.attributes["part"] = str_attr(part)
                if index in section.sram_data:
                    instruction.attributes["data"] = data_attr(section.sram_data[index])
            stream.properties["section"] = StringAttr(section.name)
            stream.properties["repeat"] = IntegerAttr(section.repeat, 64)
            op.body.block.add_op(stream)
        # The program keeps what the simulator reports: the model, the machine, the policy.
        op.attributes["hpim.model"] = op.attributes.pop("llm.model")
        op.attributes["hpim.policy"] = op.attributes.pop("pim.policy")
        del op.attributes["pim.overlap"]
        op.attributes["hpim.hw"] = StringAttr(hw.name)

    def sections(self, function: func.FuncOp, module: ModuleOp, hw: Hardware, tokens) -> list[Section]:
        block = function.body.block
        layers = next((o for o in block.ops if isinstance(o, pim.LayersOp)), None)
        if layers is None:
            raise HpimError("convert-pim-to-isa: the decode step has no pim.layers")
        stride = max(
            (
                from_dict_attr(HbmPlacement, w.placement).layer_stride
                for w in module.ops
                if isinstance(w, pim.WeightOp) and w.placement is not None and w.layered
            ),
            default=0,
        )
        count = layers.count.value.data
        prologue = Section("prologue", 1, 0)
        body = Section("layers", count, stride)
        epilogue = Section("epilogue", 1, 0)
        ops = list(block.ops)
        split = ops.index(layers)
        lowering = _Lowering(hw, tokens)
        lowering.section = prologue
        lowering.allocate_stats()
        lowering.allocate_caches(
            [a for a in layers.body.walk() if isinstance(a, pim.KVAppendOp)], count
        )
        lowering.lower_ops(prologue, ops[:split])
        lowering.lower_layer_body(body, layers)
        lowering.lower_ops(epilogue, ops[split + 1 :])
        # The value the step returns (the logits), for functional execution.
        module.attributes["hpim.logits"] = StringAttr(lowering.name(block.last_op.operands[0]))
        return [prologue, body, epilogue]
