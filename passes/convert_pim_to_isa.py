"""`convert-pim-to-isa`: the partitioned, tiled, scheduled `pim` program as the two
instruction streams of HPIM: `hbm_isa` for the HBM-PIM controller, `sram_isa` for the cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from hpim_ir.dialects import hbm_isa, pim, sram_isa
from hpim_ir.errors import HpimError
from hpim_ir.hardware import Hardware, load_hardware
from hpim_ir.passes.lower_hbm import (
    lower_attention_product,
    lower_cache_append,
    lower_gemv,
    lower_lookup,
)
from hpim_ir.passes.pim_tile_hbm import BYTES_FP16, HbmPlacement, from_dict_attr
from hpim_ir.passes.pim_tile_sram import AttentionTile
from hpim_ir.sim.sram.program import CTX, Affine, ProgramBuilder, Space, SramOp, VcuFn

_VECTOR_FNS = {
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
        return _PROJECTION_PARTS.get(op.weight.owner.weight.string_value(), "other")
    if isinstance(
        op, (pim.KVAppendOp, pim.AttentionScoresOp, pim.SoftmaxOp, pim.AttentionValuesOp, pim.RoPEOp)
    ):
        return "attention"
    if isinstance(op, (pim.ReluOp, pim.GeluOp, pim.SiluOp, pim.MulOp)):
        return "ffn"
    return "other"


@dataclass
class _Section:
    """The two streams of one section (prologue, the repeated layer body, epilogue), and the
    part each SRAM record works for."""

    name: str
    repeat: int
    row_stride: int
    hbm: list[Operation] = field(default_factory=list)
    sram: ProgramBuilder = field(default_factory=ProgramBuilder)
    sram_parts: list[str] = field(default_factory=list)


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
        self.section = _Section("", 1, 0)
        self.isa_tokens: dict[int, list[int]] = {}
        self.stats = -1  # the buffer all-gathers of norm and softmax statistics land in
        self.pending_context: dict[SSAValue, list[int]] = {}  # streamed context -> tokens

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

    def buffer(self, value: SSAValue, bytes_per_core: int | Affine | None = None) -> int:
        """The activation-memory buffer of `value` (allocated on first use, by default with
        its `layout`'s bytes)."""
        if bytes_per_core is None:
            bytes_per_core = self.layout(value)[1]
        if value not in self.buffers:
            self.buffers[value] = self.fresh()
            self.section.sram.add(
                SramOp.ALLOC, (0, self.cores), kind=Space.AM, dst=self.buffers[value],
                sizes=[bytes_per_core],
            )
        return self.buffers[value]

    def vector_share(self, value: SSAValue) -> int | Affine:
        """Bytes per core of a vector split evenly over every core; a tensor whose length is
        the context (attention scores) has `ctx + 1` along it."""
        static = _elements(value) * BYTES_FP16
        if _symbolic(value):
            return ((CTX + 1) * static).ceildiv(self.cores)
        return -(-static // self.cores)

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
        """The buffer of gathered statistics (a partial mean and variance, or a max and a sum:
        8 bytes from every core), allocated once for the whole program."""
        self.stats = self.fresh()
        self.section.sram.add(
            SramOp.ALLOC, (0, self.cores), kind=Space.AM, dst=self.stats, sizes=[8 * self.cores]
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

    # The walk -------------------------------------------------------------------------------

    def lower_ops(self, section: _Section, ops: list[Operation]) -> None:
        self.section = section
        for op in ops:
            self.lower(op)

    def lower_layer_body(self, section: _Section, layers: pim.LayersOp) -> None:
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
        part = StringAttr(part_of(op))
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
        if op.place == pim.HBM:
            if tiles == 1:  # a tiled producer raised its tokens itself, piece by piece
                (isa_token,) = self.pieces(token, 1)
                self.section.hbm.append(hbm_isa.SignalOp(tok=isa_token))
            return
        # SRAM -> HBM: the value leaves over the link, then the token is raised.
        source = self.buffers[transfer.input]
        cores, share = self.layout(transfer.input)
        self.section.sram.add(SramOp.STORE, cores, src0=source, sizes=[share])
        (isa_token,) = self.pieces(token, 1)
        self.section.sram.add(SramOp.SIGNAL, (0, self.cores), tok=isa_token)

    def lower_wait(self, op: pim.WaitOp) -> None:
        token, tiles = op.token.value.data, op.tiles.value.data if op.tiles else 1
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
        # HBM -> SRAM: each piece arrives over the link into its cores' buffer.
        cores, share = self.layout(transfer.result)
        target = self.buffer(transfer.result, share)
        for piece in self.pieces(token, tiles):
            self.section.sram.add(SramOp.WAIT, (0, self.cores), tok=piece)
            piece_bytes = share.ceildiv(tiles) if isinstance(share, Affine) else -(-share // tiles)
            self.section.sram.add(SramOp.LOAD, cores, dst=target, sizes=[piece_bytes])

    # HBM-PIM --------------------------------------------------------------------------------

    def lower_hbm(self, op: Operation) -> None:
        if isinstance(op, pim.LinearOp):
            decl = _declaration(op, op.weight.owner.weight)
            placement = from_dict_attr(HbmPlacement, decl.placement)
            token, pieces = self.pipelined_token(op)
            self.section.hbm.extend(lower_gemv(op, placement, self.hbm_cfg, pieces, token))
            return
        if isinstance(op, (pim.EmbeddingOp, pim.PositionEmbeddingOp)):
            self.section.hbm.extend(lower_lookup(_elements(op.result), self.hbm_cfg))
            return
        if isinstance(op, pim.KVAppendOp):
            decl = _declaration(op, op.cache)
            placement = from_dict_attr(HbmPlacement, decl.placement)
            streamed = any(isinstance(use.operation, pim.TransferOp) for use in op.result.uses)
            tokens, _ = self.pipelined_token(op)
            self.section.hbm.extend(
                lower_cache_append(_elements(op.value), placement, self.hbm_cfg, streamed, tokens)
            )
            return
        if isinstance(op, (pim.AttentionScoresOp, pim.AttentionValuesOp)):
            cache = op.keys if isinstance(op, pim.AttentionScoresOp) else op.values
            decl = _declaration(op, cache.owner.cache)
            placement = from_dict_attr(HbmPlacement, decl.placement)
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
            self.section.hbm.extend(
                lower_attention_product(heads, head_dim, values_in, bursts, placement, self.hbm_cfg)
            )
            return
        raise HpimError(f"convert-pim-to-isa: '{op.name}' on #pim.hbm is not supported")

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
        if type(op) in _VECTOR_FNS:
            cores, share = self.layout(op.results[0])
            inputs = [self.buffers[v] for v in op.operands if v in self.buffers]
            target = self.buffer(op.results[0], share)
            if isinstance(op, (pim.LayerNormOp, pim.RMSNormOp)):
                # Statistics of a vector split over the cores: each core's partial sums
                # (2 x 4 B) are combined over the NoC before normalizing.
                sram.add(SramOp.ALLGATHER, cores, dst=self.stats, src0=inputs[0], sizes=[8])
            sram.add(
                SramOp.VCU, cores, kind=_VECTOR_FNS[type(op)], dst=target, src0=inputs[0],
                src1=inputs[1] if len(inputs) > 1 else -1, sizes=[_elements_of_share(share)],
            )
            return
        lowerings = {
            pim.KVAppendOp: self.lower_append,
            pim.AttentionScoresOp: self.lower_scores,
            pim.SoftmaxOp: self.lower_softmax,
            pim.AttentionValuesOp: self.lower_values,
        }
        if type(op) not in lowerings:
            raise HpimError(f"convert-pim-to-isa: '{op.name}' on #pim.sram is not supported yet")
        lowerings[type(op)](op)

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
        # Room for ceil((ctx + 1) / cores_per_head) FP16 scores of each head the core runs.
        room = Affine(per_head, per_head * tile.cores_per_head, tile.cores_per_head)
        scores = self.buffer(op.result, room)
        for _ in range(tile.heads_per_core):
            self.attention_product(
                op.keys, tile, dst=scores, src0=query,
                sizes=[head_dim, (CTX + 1).ceildiv(tile.cores_per_head)],
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
            return
        tile = from_dict_attr(AttentionTile, op.tile)
        scores = self.buffers[op.input]
        self.buffers[op.result] = scores
        for _ in range(tile.heads_per_core):
            if tile.cores_per_head > 1:  # the head's global max and sum, over its cores
                self.per_head_group(tile, SramOp.ALLGATHER, self.stats, scores, 8)
            self.section.sram.add(
                SramOp.VCU, (0, tile.cores), kind=VcuFn.SOFTMAX, dst=scores, src0=scores,
                sizes=[(CTX + 1).ceildiv(tile.cores_per_head)],
            )

    def lower_values(self, op: pim.AttentionValuesOp) -> None:
        tile = from_dict_attr(AttentionTile, op.tile)
        head_dim = _elements(op.result) // tile.heads
        probs = self.buffers[op.probs]
        out = self.buffer(op.result)
        for _ in range(tile.heads_per_core):
            self.attention_product(
                op.values, tile, dst=out, src0=probs,
                sizes=[(CTX + 1).ceildiv(tile.cores_per_head), head_dim],
            )
            if tile.cores_per_head > 1:  # the head's partial outputs, summed
                self.per_head_group(tile, SramOp.REDUCE, out, out, head_dim * BYTES_FP16)

    def attention_product(self, cache: SSAValue, tile: AttentionTile, dst: int, src0: int, sizes) -> None:
        """q.K^T or s.V of one head per core: an `mvm` on the resident cache's PIM buffer, or
        a `stream_mvm` that streams a cache kept in HBM through the macros."""
        cores = (0, tile.cores)
        if _streamed_cache(cache):
            # Piece by piece as HBM-PIM reads them: wait, then stream that share of the
            # context (the context is the symbolic size of the product).
            tokens = self.pending_context[cache]
            if not tokens:
                self.section.sram.add(SramOp.STREAM_MVM, cores, dst=dst, src0=src0, sizes=sizes)
                return
            pieces = len(tokens)
            split = [
                size.ceildiv(pieces) if isinstance(size, Affine) and size.a else size
                for size in sizes
            ]
            for token in tokens:
                self.section.sram.add(SramOp.WAIT, (0, self.cores), tok=token)
                self.section.sram.add(SramOp.STREAM_MVM, cores, dst=dst, src0=src0, sizes=split)
            return
        resident = self.cache_buffers[cache.owner.cache.string_value()]
        self.section.sram.add(SramOp.MVM, cores, dst=dst, src0=src0, src1=resident, sizes=sizes)

    def per_head_group(
        self, tile: AttentionTile, op: SramOp, dst: int, src0: int, size: int
    ) -> None:
        """A collective among the cores sharing each head."""
        for head in range(tile.heads):
            first = head * tile.cores_per_head
            self.section.sram.add(
                op, (first, first + tile.cores_per_head), dst=dst, src0=src0, sizes=[size]
            )


def hbm_bursts_per_value(hbm) -> int:
    """FP16 values per 32 B burst."""
    return hbm.column_bytes // BYTES_FP16


def _streamed_cache(value: SSAValue) -> bool:
    """A cache's context arriving from HBM (a KV cache kept in HBM)."""
    owner = value.owner
    return isinstance(owner, pim.TransferOp) and isinstance(owner.input.owner, pim.KVAppendOp)


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


def _elements_of_share(share: int | Affine) -> int | Affine:
    """FP16 elements in a share of bytes."""
    if isinstance(share, Affine):
        return share.ceildiv(BYTES_FP16)
    return share // BYTES_FP16


def _declaration(op: Operation, ref) -> Operation:
    from xdsl.traits import SymbolTable

    decl = SymbolTable.lookup_symbol(op, ref)
    assert decl is not None
    return decl


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
    from HBM-PIM is `wait` + `load` per piece, one leaving is `store` + `signal`; vector ops
    are `vcu` functions (norms first combine their statistics with an all-gather); K is
    transposed and written as a K^T column of the resident cache, V as a row; q.K^T and s.V
    are `mvm`s on the cache's PIM buffer, one per head a core runs, sized by the symbolic
    context (`ctx + 1` keys); a head split over cores all-gathers its softmax statistics and
    reduces its partial outputs.

    Options:
    - `hw` (default `hpim`): hardware preset or TOML file.

    A KV cache in HBM: HBM-PIM writes the step's K and V rows at the end of the cache and
    reads the whole context out (a `read` whose row count grows with `ctx`), and SRAM-PIM
    streams it through its macros (`stream_mvm`) instead of multiplying a resident matrix.

    Not yet supported (an error names the op): prefill, attention in HBM-PIM (`hbm-only`).
    """

    name = "convert-pim-to-isa"

    hw: str = "hpim"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        hw = load_hardware(self.hw)
        if hw.sram is None:
            raise HpimError(f"hardware {hw.name!r} has no SRAM-PIM part to lower to")
        function = next((f for f in op.ops if isinstance(f, func.FuncOp)), None)
        if function is None or function.sym_name.data != "decode_step":
            raise HpimError("convert-pim-to-isa lowers a decode step (func @decode_step)")
        tokens = {
            signal.token.value.data: signal.prev_op
            for signal in op.walk()
            if isinstance(signal, pim.SignalOp)
        }
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
            for instruction, part in zip(stream.body.block.ops, section.sram_parts, strict=True):
                instruction.attributes["part"] = StringAttr(part)
            stream.properties["section"] = StringAttr(section.name)
            stream.properties["repeat"] = IntegerAttr(section.repeat, 64)
            op.body.block.add_op(stream)
        # The program keeps what the simulator reports: the model, the machine, the policy.
        op.attributes["hpim.model"] = op.attributes.pop("llm.model")
        op.attributes["hpim.policy"] = op.attributes.pop("pim.policy")
        del op.attributes["pim.overlap"]
        op.attributes["hpim.hw"] = StringAttr(hw.name)

    def sections(self, function: func.FuncOp, module: ModuleOp, hw: Hardware, tokens) -> list[_Section]:
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
        prologue = _Section("prologue", 1, 0)
        body = _Section("layers", count, stride)
        epilogue = _Section("epilogue", 1, 0)
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
        return [prologue, body, epilogue]
