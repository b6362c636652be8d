"""SRAM-PIM lowerings of `convert-pim-to-isa` for work whose weights stream from HBM: a
linear on SRAM-PIM with its weight read from HBM in normal mode (`lower_streamed_linear`),
and the whole prefill built on it (`lower_prefill`).

A module of helpers (not a pass): `convert-pim-to-isa` calls `lower_prefill` for a
`func @prefill`; other lowerings (a near-memory design's GEMVs) call
`lower_streamed_linear` with their own `Streams`.

**The streamed linear.** `Y (m x N) = X (m x K) . W (K x N)` for `m` tokens (the rows of the
GEMM; `m = 1` is a GEMV), `X` and `Y` split evenly over the cores' activation memory. Every
core computes `ceil(N / cores)` output columns for all `m` tokens on its TCU, so every core
needs all of `X`: the cores all-gather it over the NoC, a block of `k` input rows (a
multiple of the TCU's rows) at a time. Linears that read the same `X` (Q, K and V; a gated
FFN's gate and up) stream as one *group* and share each gathered block. The weights are
cut into *tiles*: `k` input rows of one linear's columns, in stream order row blocks
outermost (`LinearTiling.tiles`), so a row block is gathered once for all the tiles of all
the group's weights. Per tile:

- HBM-PIM reads the tile (`k x N` FP16, spread evenly over the weight's channels) in normal
  mode (`hbm_isa.read`: whole rows of every bank, then the columns of a last partial row)
  and raises the tile's *ready* token;
- SRAM-PIM (at a row block's first tile: all-gathers the block's `m x k` slice of `X`)
  waits for *ready*, loads its `k x ceil(N / cores)` share of the tile over the link,
  raises the tile's *free* token, and multiplies on the TCU (`gemm m, N/cores, k`,
  accumulating into `Y`).

Gathered blocks and weight shares are double-buffered: the next ones land in the other
buffer while the current ones are multiplied (a core's load into a buffer waits for the
multiply that reads it, the engine's dependency rule), and HBM-PIM reads tile `i + 2` only
once tile `i` is *free* (its `hbm_isa.wait`): every core has loaded it, so HBM-PIM's side
holds at most two tiles that the cores have not taken. (A signal is raised once every
earlier instruction of its cores has completed, so *free* also waits for the multiply of
tile `i - 1`.) `k` is
the largest multiple of the TCU rows whose four buffers fit the activation memory left, and
at most a quarter of `K` (so the stream pipelines); if one TCU-row block of every output
column of a core does not fit (a large vocabulary, a wide FFN at many tokens), tiles are
also cut into blocks of TCU columns, as many as fit beside the gathered blocks. A weight
whose smallest tile cannot fit is a `DoesNotFit` error naming the bytes. The bias
initializes the accumulators (no extra work), as in the decode GEMVs.

**The prefill.** The prompt (`S` tokens, a constant of the program: it is compiled per prompt
length) runs in *chunks* of `m` tokens, each through every layer before the next (chunked
prefill): the whole prompt's activations rarely fit the cores' activation memory (OPT-30B's
FFN at 256 tokens is 14 MiB, the cores hold 12 MiB). `m` is `S` if every buffer fits, else
the largest multiple of the TCU rows that fits (a chunk fills the TCUs' rows: fewer tokens
would leave rows idle, and more tokens per chunk leave less room for the weight tiles), else
the largest power of two below them; the error names what does not fit even at one token.
An FFN whose intermediate does not fit whole (a gated FFN's gate and up at 128 tokens of
LLaMA-3-8B: 224 KiB a core) is *blocked* instead (`lower_blocked_ffn`): per block of the
intermediate's columns (a multiple of the TCU columns on every core), up (and gate) stream
the block's columns of their weights, the activation runs on the block, and down streams
the block's rows of its weight, accumulating onto the earlier blocks' sums. Each weight is
still read once; the FFN's input is gathered once per block, and the block buffers leave
less room for the weight tiles. A chunk costs a whole weight stream, but only up to the
chunk size where the TCUs' work outlasts the stream (`compute_bound_tokens`): the prefill
blocks its FFNs only to reach that size, and only if the blocked chunks' serial estimate
(`serial_prefill_ns`) is below the unblocked ones' (`lower_prefill`).

Sections: per chunk `c` a `prologue.c` (embedding lookups in HBM, loaded over the link) and
a `layers.c` (`repeat = layers`, rows moved by the weights' layer stride), then one
`epilogue` (final norm and LM head for the last token only: the logits generation needs).

In a layer: norms, activations and residual adds are `vcu` functions over each core's share
(norms first all-gather each token's partial statistics); every projection is a streamed
linear; attention is per head on the cores `pim-tile-sram` assigns (a core runs its heads one
after the other; a head split over cores splits its queries): `gemm` q.K^T against the
chunk's keys and, from the second chunk on, the earlier chunks' keys read back from the KV
cache in HBM (`hbm_isa.read`, loaded over the link) in blocks that fit the activation
memory, `vcu softmax` over the scores, `gemm` s.V likewise; each block after the first
rescales the running output (`vcu mul`, flash-attention style). The causal mask is applied
to whole blocks: the chunk's own block is computed whole and masked. The chunk's K and V
leave over the link (`store` + `signal`) and HBM-PIM writes them at their positions of the
cache (`hbm_isa.write`) once it has read the layer's weights, so the writes never hold up
the weight stream. A value's buffer is freed after its last reader; a vector op whose input
has no later reader overwrites it in place.

Not lowered (an error says so): a prefill whose KV cache is resident in SRAM-PIM
(`KvCacheInSram`), and projections placed on HBM-PIM (the `hbm-only` policy's prefill:
`PrefillOnHbm`). `hpim simulate` and `hpim run` run either prefill token by token, as decode
steps.

**Values.** Every instruction says what it computes in a `data` attribute, with the decode
step's conventions (`convert_pim_to_isa`: value names, `lookup_data`, `vector_data`):
which weight tile a `read` brings and which input columns the all-gather collects, where a
linear's accumulators start, each attention instruction's heads, queries and key positions,
the online softmax's block; docs/functional.md has the table and
`hpim_ir.sim.functional.isa` executes it. Timing ignores it. With `all_logits` the prefill
computes the LM head for every token of each chunk (an `epilogue.<chunk>` after each
chunk's layers) rather than for the last token only: what `hpim run` checks row by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hpim_ir.dialects import hbm_isa, pim
from hpim_ir.dialects.interned import str_attr
from hpim_ir.passes.convert_pim_to_isa import (
    STATS_BYTES,
    VECTOR_FNS,
    Section,
    hbm_placement,
    lookup_data,
    part_of,
    value_name,
    vector_data,
    weight_name,
)
from hpim_ir.passes.lower_hbm import data_attr, lower_lookup, stream_span
from hpim_ir.passes.pim_tile_hbm import BYTES_FP16, HbmPlacement, from_dict_attr
from hpim_ir.passes.pim_tile_sram import AttentionTile
from hpim_ir.sim.sram.program import Space, SramOp, VcuFn
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from hpim_ir.errors import HpimError
from hpim_ir.hardware import Hardware

MIN_TILES = 4
"""A weight streams in at least this many tiles (when it has that many TCU-row blocks), so
reading one tile overlaps multiplying another."""


class DoesNotFit(HpimError):
    """A buffer does not fit the activation memory left on a core."""


class PrefillOnHbm(HpimError):
    """The policy placed the prefill's GEMMs on HBM-PIM, which has no GEMM: such a design
    runs the prompt token by token, as decode steps (`hpim_ir.simulate.simulate_prefill`)."""


class KvCacheInSram(HpimError):
    """The prefill of a program whose KV cache is resident in SRAM-PIM (not lowered yet)."""


class Streams:
    """Emits into the current section's two streams, numbers buffers and tokens, and keeps
    each core's activation memory as allocated so far (every core allocates alike)."""

    def __init__(self, hw: Hardware):
        self.hw = hw
        self.cores = hw.sram.cores
        self.capacity = hw.sram.activation_memory_bytes
        self.section = Section("", 1, 0)
        self.part = "other"
        self.live: dict[int, int] = {}  # buffer -> bytes per core
        self.next_buffer = 0
        self.next_token = 0
        self.names: dict[SSAValue, str] = {}  # values named in `data` attributes
        self.last_row_of = -1  # a buffer of which instructions read the last token only

    def name(self, value: SSAValue) -> str:
        return value_name(self.names, value)

    def sram(
        self, op: SramOp, cores: tuple[int, int] | None = None, data: dict | None = None,
        **fields,
    ) -> None:
        """One SRAM record on `cores` (default all), with its `data` (what it computes)."""
        self.section.sram.add(op, cores or (0, self.cores), **fields)
        self.section.sram_parts.append(self.part)
        if data is not None and self.last_row_of >= 0 and fields.get("src0") == self.last_row_of:
            data = {**data, "last": 1}
        if data is not None:
            self.section.sram_data[len(self.section.sram.rows) - 1] = data

    def hbm(self, *ops: Operation, data: dict | None = None) -> None:
        """HBM records (`data`: what each computes)."""
        for op in ops:
            op.attributes["part"] = str_attr(self.part)
            if data is not None:
                op.attributes["data"] = data_attr(data)
            self.section.hbm.append(op)

    def token(self) -> int:
        self.next_token += 1
        return self.next_token - 1

    def left(self) -> int:
        """Activation-memory bytes per core not allocated."""
        return self.capacity - sum(self.live.values())

    def alloc(self, nbytes: int, what: str, holds: str = "") -> int:
        """A buffer of `nbytes` per core; `holds` names what it holds (its `data`)."""
        if nbytes > self.left():
            raise DoesNotFit(
                f"{what} needs {nbytes:,} bytes per core of activation memory; "
                f"{self.left():,} of {self.capacity:,} are left"
            )
        number = self.next_buffer
        self.next_buffer += 1
        self.live[number] = nbytes
        data = {"holds": holds} if holds else None
        self.sram(SramOp.ALLOC, kind=Space.AM, dst=number, sizes=[nbytes], data=data)
        return number

    def free(self, number: int) -> None:
        del self.live[number]
        self.sram(SramOp.FREE, dst=number)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


class WeightTile(NamedTuple):
    """Input rows `[at, at + inputs)` of output `output`'s columns `[first, first + columns)`
    on each core (core k's columns start at k x its columns per core); `total` of the
    weight's columns in all."""

    at: int
    inputs: int
    output: int
    first: int
    columns: int
    total: int


@dataclass(frozen=True)
class LinearTiling:
    """How streamed linears that share their input are cut: `tokens x inputs . inputs x
    outputs[i]` on `cores` cores; a tile is `tile_inputs` input rows of at most
    `tile_outputs` of one output's columns per core."""

    tokens: int
    inputs: int
    outputs: tuple[int, ...]
    cores: int
    tile_inputs: int
    tile_outputs: int

    def per_core(self, output: int) -> int:
        """Columns of output `output` each core computes."""
        return _ceil(self.outputs[output], self.cores)

    def tiles(self) -> list[WeightTile]:
        """The tiles in stream order: input-row blocks outermost; in each, every output's
        column blocks (the last of each kind the remainder): a row block's slice of X is
        gathered once for all the columns of all the outputs."""
        tiles = []
        for at in range(0, self.inputs, self.tile_inputs):
            inputs = min(self.tile_inputs, self.inputs - at)
            for output, width in enumerate(self.outputs):
                per_core = self.per_core(output)
                for first in range(0, per_core, self.tile_outputs):
                    columns = min(self.tile_outputs, per_core - first)
                    total = min(width, (first + columns) * self.cores) - first * self.cores
                    tiles.append(WeightTile(at, inputs, output, first, columns, total))
        return tiles

    def gathered_bytes(self, inputs: int) -> int:
        """Bytes a core contributes to the all-gather of `inputs` input rows' slice of X."""
        return _ceil(self.tokens * inputs * BYTES_FP16, self.cores)

    def buffer_bytes(self) -> int:
        """Per core, both buffers of the gathered inputs and of the weight share."""
        weight = self.tile_inputs * self.tile_outputs * BYTES_FP16
        return 2 * (self.gathered_bytes(self.tile_inputs) * self.cores + weight)


def linear_tiling(
    tokens: int, inputs: int, outputs: tuple[int, ...], cores: int, tcu: tuple[int, int],
    budget: int, what: str,
) -> LinearTiling:
    """The tiling of streamed linears sharing their input whose four tile buffers fit
    `budget` bytes per core: every column a core computes of the widest output in each tile
    if a block of TCU rows allows it (then tiles of the most TCU-row blocks that fit, at
    most `ceil(blocks / MIN_TILES)`), else one TCU-row block of the most TCU-column blocks
    that fit beside its gathered inputs. DoesNotFit names the weights (`what`) if one block
    of each does not fit."""
    rows, cols = tcu
    per_core = _ceil(max(outputs), cores)

    def tiling(tile_inputs: int, tile_outputs: int) -> LinearTiling:
        return LinearTiling(
            tokens, inputs, outputs, cores, min(tile_inputs, inputs), min(tile_outputs, per_core)
        )

    smallest = tiling(rows, cols)
    if smallest.buffer_bytes() > budget:
        raise DoesNotFit(
            f"{what}: a tile of {smallest.tile_inputs} x {smallest.tile_outputs} per core at "
            f"{tokens} tokens needs {smallest.buffer_bytes():,} bytes per core of activation "
            f"memory (double-buffered inputs and weights); {budget:,} are left"
        )
    if tiling(rows, per_core).buffer_bytes() > budget:
        gathered = 2 * smallest.gathered_bytes(smallest.tile_inputs) * cores
        blocks = (budget - gathered) // (2 * smallest.tile_inputs * cols * BYTES_FP16)
        return tiling(rows, blocks * cols)
    most = max(1, _ceil(_ceil(inputs, rows), MIN_TILES))
    fitting = max(1, min(most, budget // tiling(rows, per_core).buffer_bytes()))
    return tiling(fitting * rows, per_core)


@dataclass(frozen=True)
class StreamedOutput:
    """One linear of a streamed group: its result's buffer `y`, its weight's HBM `placement`
    (rows of layer 0) and, for functional execution, its `values` (`w`, optional `bias`:
    the weight's and bias's names; None: the instructions carry no `data`). A stream of one
    block of the weight (a blocked FFN's) computes the weight's output columns `[base,
    base + width)` (its `block`) into `y` and reads the placement from byte `offset` per
    channel on."""

    y: int
    placement: HbmPlacement
    values: dict | None = None
    block: tuple[int, int] | None = None
    offset: int = 0


def lower_streamed_linear(
    streams: Streams, x: int, outputs: list[StreamedOutput], tiling: LinearTiling, what: str,
    rows_at: int = 0, accumulate: bool = False,
) -> list[int]:
    """Emit streamed linears that share their input (module docstring): `x` is the
    activation-memory buffer of X; the instructions carry `data` for functional execution
    (docs/functional.md) when the outputs have `values`. `rows_at`: the weights' input row
    X's first column multiplies; `accumulate`: the outputs' accumulators hold the sums of
    earlier rows (no start, no bias). The byte offsets per channel where each output's
    reads end."""
    tiles = tiling.tiles()
    functional = outputs[0].values is not None
    holds = "tile" if functional else ""
    gathered = [
        streams.alloc(
            tiling.gathered_bytes(tiling.tile_inputs) * tiling.cores, f"{what}'s gathered inputs",
            holds,
        )
        for _ in range(2)
    ]
    weights = [
        streams.alloc(
            tiling.tile_inputs * tiling.tile_outputs * BYTES_FP16, f"{what}'s weight tiles", holds
        )
        for _ in range(2)
    ]
    ready = [streams.token() for _ in tiles]
    free = [streams.token() if t + 2 < len(tiles) else -1 for t in range(len(tiles))]
    offsets = [out.offset for out in outputs]  # each weight is read in stream order
    for t, (at, inputs, o, first, columns, total) in enumerate(tiles):
        out = outputs[o]
        if t >= 2:
            streams.hbm(hbm_isa.WaitOp(tok=free[t - 2]))
        reads, offsets[o] = stream_span(
            hbm_isa.ReadOp, out.placement, offsets[o], inputs * total * BYTES_FP16,
            streams.hw.hbm,
        )
        # A tile's name on the link (a blocked FFN's: with where its rows and columns start).
        base = out.block[0] if out.block else 0
        block = f"@{rows_at},{base}" if out.block or rows_at else ""
        tile = f"{out.values['w']}{block}.{t}" if functional else ""
        read = {
            "dst": tile, "w": out.values["w"], "at": rows_at + at, "inputs": inputs,
            "first": first, "columns": columns, "per_core": tiling.per_core(o),
        } if functional else None
        if functional and out.block is not None:
            read.update(base=out.block[0], width=out.block[1])
        streams.hbm(*reads, data=read)
        streams.hbm(hbm_isa.SignalOp(tok=ready[t]))
        rows = gathered[at // tiling.tile_inputs % 2]
        if o == first == 0:  # a row block's inputs serve all of its tiles
            gather = {"at": at, "inputs": inputs} if functional else None
            if functional and rows_at:  # X's columns multiply the weights' rows from rows_at
                gather["rows_at"] = rows_at
            streams.sram(
                SramOp.ALLGATHER, dst=rows, src0=x, sizes=[tiling.gathered_bytes(inputs)],
                data=gather,
            )
        streams.sram(SramOp.WAIT, tok=ready[t])
        streams.sram(
            SramOp.LOAD, dst=weights[t % 2], sizes=[inputs * columns * BYTES_FP16],
            data={"src": tile} if functional else None,
        )
        if free[t] >= 0:  # the tile has left HBM-PIM's side; the multiply need not end first
            streams.sram(SramOp.SIGNAL, tok=free[t])
        gemm = None
        if functional:  # the first row block starts each column block's accumulators (at the bias)
            start = at == 0 and not accumulate
            gemm = {"kind": "linear", "start": int(start)}
            if start and out.values.get("bias"):
                gemm["bias"] = out.values["bias"]
        streams.sram(
            SramOp.GEMM, dst=out.y, src0=rows, src1=weights[t % 2],
            sizes=[tiling.tokens, columns, inputs], data=gemm,
        )
    for number in (*gathered, *weights):
        streams.free(number)
    return offsets


def linear_values(linear: pim.LinearOp) -> dict:
    """`lower_streamed_linear`'s `values` for a linear: its weight's and bias's names."""
    values = {"w": weight_name(linear)}
    if linear.bias is not None:
        bias = linear.bias
        while isinstance(bias.owner, pim.TransferOp):
            bias = bias.owner.input
        values["bias"] = bias.owner.weight.string_value()
    return values


# --- the prefill -----------------------------------------------------------------------------


def _width(value: SSAValue) -> int:
    """Features per token of a `tokens x width` tensor."""
    return value.type.get_shape()[-1]


def sram_source(value: SSAValue) -> SSAValue:
    """The SRAM-PIM value a cache's content comes from in a prefill: the keys (values) that
    went to the KV cache through a transfer, before RoPE or after it, as appended."""
    while True:
        owner = value.owner
        if isinstance(owner, pim.TransferOp) and isinstance(owner.input.owner, pim.KVAppendOp):
            value = owner.input.owner.value
        elif isinstance(owner, pim.TransferOp) and owner.destination == pim.HBM:
            value = owner.input
        else:
            return value


def _readers(op: Operation) -> list[SSAValue]:
    """The SRAM-PIM values whose buffers lowering `op` reads."""
    if isinstance(op, pim.TransferOp) and op.destination == pim.HBM:
        return [op.input]
    if isinstance(op, pim.LinearOp):
        return [op.input]
    if isinstance(op, pim.AttentionValuesOp):
        scores = op.probs.owner.input.owner
        return [scores.query, sram_source(scores.keys), sram_source(op.values)]
    if isinstance(op, pim.AttentionScoresOp | pim.SoftmaxOp | pim.YieldOp | func.ReturnOp):
        return []
    return [
        v for v in op.operands
        if pim.place_of_value(v) == pim.SRAM and not isinstance(v.owner, pim.GetWeightOp)
    ]


_TCU_WORK = (pim.LinearOp, pim.AttentionScoresOp, pim.AttentionValuesOp)
"""The prefill's GEMMs: what runs on the TCUs."""


@dataclass(frozen=True)
class Chunk:
    """Tokens `[first, first + tokens)` of the prompt."""

    index: int
    first: int
    tokens: int


def prompt_chunks(prompt: int, count: int) -> list[Chunk]:
    size = _ceil(prompt, count)
    return [
        Chunk(i, first, min(size, prompt - first))
        for i, first in enumerate(range(0, prompt, size))
    ]


_ELEMENTWISE = (pim.ReluOp, pim.GeluOp, pim.SiluOp, pim.MulOp, pim.AddOp)
"""Vector ops that work column by column: a block of their inputs' columns gives the same
block of their result's."""


def blockable_ffn(
    group: list[pim.LinearOp], later: list[Operation]
) -> tuple[list[Operation], pim.LinearOp] | None:
    """An FFN starting at the streamed `group` (its linears of one width): the elementwise
    ops among `later` that read only the group's results and each other's, and the one
    linear on SRAM-PIM that reads the last of them; None unless nothing else reads any of
    these values (so the intermediate can be computed and consumed block by block)."""
    produced = {linear.result for linear in group}
    chain: list[Operation] = []
    for op in later:
        if not any(v in produced for v in op.operands):
            continue
        if isinstance(op, _ELEMENTWISE) and all(v in produced for v in op.operands):
            chain.append(op)
            produced.add(op.results[0])
            continue
        members = {*group, *chain, op}
        if (
            isinstance(op, pim.LinearOp) and op.place == pim.SRAM and chain
            and op.input == chain[-1].results[0]
            and len({_width(linear.result) for linear in group}) == 1
            and all(use.operation in members for v in produced for use in v.uses)
        ):
            return chain, op
        return None
    return None


class _PrefillLowering:
    """Lowers the prefill for one chunking of the prompt."""

    def __init__(
        self, module: ModuleOp, function: func.FuncOp, hw: Hardware, chunks: list[Chunk],
        all_logits: bool = False, blocks: int = 1,
    ):
        self.all_logits = all_logits
        self.blocks = blocks  # an FFN's intermediate in this many blocks (1: whole)
        # The ops of each blockable FFN -> its most blocks (TCU column blocks per core).
        self.most_blocks: dict[Operation, int] = {}
        self.more_blocks_may_fit = False  # a DoesNotFit arose in an FFN with blocks to spare
        self.module = module
        self.function = function
        self.hw = hw
        self.streams = Streams(hw)
        self.chunks = chunks
        self.buffers: dict[SSAValue, int] = {}
        self.state = self.stats = -1  # the hidden state's and the statistics' buffers
        self.last: dict[SSAValue, int] = {}  # value -> index of its last reader in the block
        self.index = 0  # of the op being lowered in its block
        self.ops: list[Operation] = []  # the block being lowered
        self.grouped: set[Operation] = set()  # its linears lowered with an earlier one
        self.stored: dict[SSAValue, int] = {}  # a value sent to HBM -> the token of its store
        self.deferred: list[Operation] = []  # the layer's KV-cache writes, after its reads
        for op in function.walk():
            if isinstance(op, _TCU_WORK) and op.place != pim.SRAM:
                raise PrefillOnHbm(
                    f"convert-pim-to-isa: the prefill's '{op.name}' is placed on #pim.hbm; a "
                    "prefill is lowered with its projections and attention on SRAM-PIM only "
                    "(policy hpim or serial)"
                )
        block = function.body.block
        self.layers = next((o for o in block.ops if isinstance(o, pim.LayersOp)), None)
        if self.layers is None:
            raise HpimError("convert-pim-to-isa: the prefill has no pim.layers")
        self.stride = max(
            (
                from_dict_attr(HbmPlacement, d.placement).layer_stride
                for d in module.ops
                if isinstance(d, pim.WeightOp | pim.KVCacheOp)
                and d.placement is not None
                and d.place == pim.HBM
            ),
            default=0,
        )

    # buffers ----------------------------------------------------------------------------

    def share(self, width: int, tokens: int) -> int:
        """Bytes per core of `tokens x width` FP16 split evenly over the cores, and at least
        each token's partial statistics (the norms all-gather them from the buffer: a
        model narrower than 4 values a token per core leaves the rest padding)."""
        stats = STATS_BYTES // BYTES_FP16 * tokens
        return max(_ceil(tokens * width, self.streams.cores), stats) * BYTES_FP16

    def new_buffer(self, value: SSAValue, nbytes: int) -> int:
        if value not in self.buffers:
            self.buffers[value] = self.streams.alloc(
                nbytes, f"'{value.owner.name}'", self.streams.name(value)
            )
        return self.buffers[value]

    # the program --------------------------------------------------------------------------

    def sections(self) -> list[Section]:
        block = self.function.body.block
        ops = list(block.ops)
        split = ops.index(self.layers)
        most = max(c.tokens for c in self.chunks)
        width = _width(self.layers.init)
        streams = self.streams
        out: list[Section] = []
        for chunk in self.chunks:
            prologue = Section(f"prologue.{chunk.index}", 1, 0)
            streams.section = prologue
            if chunk.index == 0:
                # The hidden state of a chunk, and the per-token statistics norms gather:
                # one buffer each for the whole program.
                self.state = streams.alloc(
                    self.share(width, most), "the hidden state", "the hidden state"
                )
                self.stats = streams.alloc(
                    STATS_BYTES * most * streams.cores, "the norms' statistics"
                )
            state = self.state
            self.buffers = {self.layers.init: state}
            self.lower_block(ops[:split], chunk.tokens, chunk)
            body = Section(f"layers.{chunk.index}", self.layers.count.value.data, self.stride)
            streams.section = body
            layer_block = self.layers.body.block
            self.buffers = {layer_block.args[1]: state, layer_block.last_op.operands[0]: state}
            self.lower_block(list(layer_block.ops), chunk.tokens, chunk)
            streams.part = "attention"  # a cache append's part
            streams.hbm(*self.deferred)
            self.deferred = []
            out += [prologue, body]
            if self.all_logits:
                out.append(self.epilogue(f"epilogue.{chunk.index}", ops[split + 1 :], chunk))
        if not self.all_logits:
            out.append(self.epilogue("epilogue", ops[split + 1 :], self.chunks[-1]))
        streams.part = "other"
        streams.free(self.stats)
        streams.free(self.state)
        # The value the program returns (the logits), for functional execution.
        logits = streams.name(block.last_op.operands[0])
        self.module.attributes["hpim.logits"] = StringAttr(logits)
        return out

    def epilogue(self, name: str, ops: list[Operation], chunk: Chunk) -> Section:
        """The final norm and LM head after `chunk`: for the last token only (the logits
        generation needs), or with `all_logits` for each of its tokens."""
        section = Section(name, 1, 0)
        self.streams.section = section
        self.buffers = {self.layers.result: self.state}
        tokens = chunk.tokens if self.all_logits else 1
        self.streams.last_row_of = self.state if tokens < chunk.tokens else -1
        self.lower_block(ops, tokens, chunk)
        self.streams.last_row_of = -1
        return section

    def lower_block(self, ops: list[Operation], tokens: int, chunk: Chunk) -> None:
        """Lower `ops` for `tokens` tokens of `chunk`, freeing each value's buffer after its
        last reader (the hidden state stays)."""
        last: dict[SSAValue, int] = {}
        for index, op in enumerate(ops):
            for value in _readers(op):
                last[value] = index
        self.last = last
        self.ops, self.grouped = ops, set()
        for index, op in enumerate(ops):
            self.index = index
            self.streams.part = self.part(op)
            try:
                self.lower(op, tokens, chunk)
            except DoesNotFit:
                self.more_blocks_may_fit = self.blocks < self.most_blocks.get(op, 0)
                raise
            for value in _readers(op):
                number = self.buffers.get(value, -1)
                if last[value] == index and number not in (-1, self.state):
                    self.streams.free(number)
                    del self.buffers[value]
        for value, number in list(self.buffers.items()):
            if number != self.state and number in self.streams.live:
                self.streams.free(number)
                del self.buffers[value]

    def part(self, op: Operation) -> str:
        if isinstance(op, pim.TransferOp):
            producer = op.input.owner
            return self.part(producer) if isinstance(producer, Operation) else "other"
        if isinstance(op, pim.SignalOp | pim.WaitOp):
            return "other"  # the pipeline's sync, if present, is not lowered (the tiles sync)
        return part_of(op)

    def lower(self, op: Operation, tokens: int, chunk: Chunk) -> None:
        if op in self.grouped:
            return  # lowered with an earlier op: a streamed group, a blocked FFN
        if isinstance(
            op,
            pim.GetWeightOp | arith.ConstantOp | func.ReturnOp | pim.YieldOp | pim.SignalOp
            | pim.WaitOp | pim.AttentionScoresOp | pim.SoftmaxOp,
        ):
            return  # weights are read by their linear; scores and softmax with the values
        if isinstance(op, pim.TransferOp):
            return self.lower_transfer(op, tokens)
        if isinstance(op, pim.EmbeddingOp | pim.PositionEmbeddingOp):
            data = lookup_data(
                op, self.streams.name(op.result), first=chunk.first, tokens=tokens
            )
            placement = hbm_placement(self.function, op.table.owner.weight)
            reads = lower_lookup(_width(op.result), tokens, placement, self.hw.hbm)
            self.streams.hbm(*reads, data=data)
            return
        if isinstance(op, pim.KVAppendOp):
            return self.lower_append(op, tokens, chunk)
        if op.properties.get("place") != pim.SRAM:
            raise HpimError(
                f"convert-pim-to-isa: '{op.name}' on #pim.hbm in a prefill is not supported "
                "(the prefill's projections run on SRAM-PIM)"
            )
        if isinstance(op, pim.LinearOp):
            return self.lower_linear(op, tokens, chunk)
        if isinstance(op, pim.AttentionValuesOp):
            return self.lower_attention(op, tokens, chunk)
        if type(op) in VECTOR_FNS:
            return self.lower_vector(op, VECTOR_FNS[type(op)], tokens, chunk)
        raise HpimError(f"convert-pim-to-isa: '{op.name}' in a prefill is not supported")

    def lower_transfer(self, op: pim.TransferOp, tokens: int) -> None:
        producer = op.input.owner
        if isinstance(producer, pim.GetWeightOp | pim.KVAppendOp):
            return  # a weight streams with its linear; the cache's content is on SRAM-PIM
        streams = self.streams
        token = streams.token()
        share = self.share(_width(op.input), tokens)
        if op.destination == pim.HBM:
            streams.sram(
                SramOp.STORE, src0=self.buffers[op.input], sizes=[share],
                data={"dst": streams.name(op.input)},
            )
            streams.sram(SramOp.SIGNAL, tok=token)
            self.stored[op.result] = token
            return
        streams.hbm(hbm_isa.SignalOp(tok=token))
        target = self.new_buffer(op.result, share)
        streams.sram(SramOp.WAIT, tok=token)
        streams.sram(
            SramOp.LOAD, dst=target, sizes=[share],
            data={"src": streams.name(op.result), "width": _width(op.result)},
        )

    def lower_append(self, op: pim.KVAppendOp, tokens: int, chunk: Chunk) -> None:
        if op.place != pim.HBM:
            raise KvCacheInSram(
                "convert-pim-to-isa: a prefill with the KV cache resident in SRAM-PIM is not "
                "lowered yet (compile it with kv-cache=hbm)"
            )
        placement = hbm_placement(self.function, op.cache)
        width = _width(op.value)
        writes, _ = stream_span(
            hbm_isa.WriteOp, placement, chunk.first * width * BYTES_FP16 // placement.channels,
            tokens * width * BYTES_FP16, self.hw.hbm,
        )
        data = {
            "cache": op.cache.string_value(), "src": self.streams.name(op.value),
            "first": chunk.first, "width": width,
        }
        for write in writes:
            write.attributes["data"] = data_attr(data)
        self.deferred += [hbm_isa.WaitOp(tok=self.stored[op.value]), *writes]

    def lower_vector(self, op: Operation, fn: VcuFn, tokens: int, chunk: Chunk) -> None:
        streams = self.streams
        readers = _readers(op)
        inputs = [self.buffers[v] for v in readers]
        share = self.share(_width(op.results[0]), tokens)
        first = readers[0]
        if (
            self.last[first] == self.index
            and inputs[0] != self.state
            and _width(first) == _width(op.results[0])
            and op.results[0] not in self.buffers
        ):
            # The input's last reader: the result overwrites it in place.
            self.buffers[op.results[0]] = self.buffers.pop(first)
        target = self.new_buffer(op.results[0], share)
        if isinstance(op, pim.LayerNormOp | pim.RMSNormOp):
            # Each token's partial sums (2 x 4 B per core) combined over the NoC.
            streams.sram(
                SramOp.ALLGATHER, dst=self.stats, src0=inputs[0], sizes=[STATS_BYTES * tokens],
                data={"stat": "moments"},
            )
        streams.sram(
            SramOp.VCU, kind=fn, dst=target, src0=inputs[0],
            src1=inputs[1] if len(inputs) > 1 else -1, sizes=[share // BYTES_FP16],
            data=vector_data(op, first=chunk.first),
        )

    def linear_bytes(self, width: int, tokens: int) -> int:
        """Bytes per core of a streamed linear's `tokens x width` result: each core's
        columns for every token, at least an even share."""
        per_core = tokens * _ceil(width, self.streams.cores) * BYTES_FP16
        return max(per_core, self.share(width, tokens))

    def weight_placement(self, linear: pim.LinearOp) -> HbmPlacement:
        return hbm_placement(self.function, pim.weight_source(linear).weight)

    def tiling(self, tokens: int, inputs: int, outputs: tuple[int, ...], what: str) -> LinearTiling:
        """Tiles of a streamed group in the activation memory left."""
        tcu = (self.hw.sram.tcu.rows, self.hw.sram.tcu.cols)
        cores, left = self.streams.cores, self.streams.left()
        return linear_tiling(tokens, inputs, outputs, cores, tcu, left, what)

    def lower_linear(self, op: pim.LinearOp, tokens: int, chunk: Chunk) -> None:
        """`op` and the later linears of its block that read the same input (Q, K and V;
        a gated FFN's gate and up) as one streamed group: X is gathered once for all. An
        FFN whose intermediate is cut in blocks (`blocks` > 1) is lowered whole here."""
        group = [op] + [
            other for other in self.ops[self.index + 1 :]
            if isinstance(other, pim.LinearOp) and other.input == op.input
            and other.place == pim.SRAM
        ]
        self.grouped.update(group)
        ffn = blockable_ffn(group, self.ops[self.index + 1 :])
        if ffn is not None:
            chain, down = ffn
            columns = _ceil(_ceil(_width(op.result), self.streams.cores), self.hw.sram.tcu.cols)
            self.most_blocks.update(dict.fromkeys((*group, *chain, down), columns))
            if self.blocks > 1:
                self.grouped.update((*chain, down))
                return self.lower_blocked_ffn(group, chain, down, tokens, chunk)
        outputs = [
            StreamedOutput(
                self.new_buffer(linear.result, self.linear_bytes(_width(linear.result), tokens)),
                self.weight_placement(linear), linear_values(linear),
            )
            for linear in group
        ]
        what = ", ".join(f"@{weight_name(linear)}" for linear in group)
        widths = tuple(_width(linear.result) for linear in group)
        tiling = self.tiling(tokens, _width(op.input), widths, what)
        lower_streamed_linear(self.streams, self.buffers[op.input], outputs, tiling, what)

    def lower_blocked_ffn(
        self, group: list[pim.LinearOp], chain: list[Operation], down: pim.LinearOp,
        tokens: int, chunk: Chunk,
    ) -> None:
        """An FFN whose intermediate does not fit whole, by blocks of the intermediate's
        columns (`blocks` of them, each a multiple of the TCU columns on every core): per
        block, the group's linears stream the block's columns of their weights into block
        buffers (X gathered again for each block), the elementwise `chain` runs on them in
        place, and `down` streams the block's rows of its weight, accumulating into its
        result (the first block starts it at the bias). Each weight is still read once."""
        streams = self.streams
        cores = streams.cores
        width, hidden = _width(group[0].result), _width(down.result)
        step = _ceil(_ceil(_ceil(width, cores), self.hw.sram.tcu.cols), self.blocks)
        step *= self.hw.sram.tcu.cols * cores
        x = self.buffers[group[0].input]
        y = self.new_buffer(down.result, self.linear_bytes(hidden, tokens))
        offsets = [0] * len(group)
        down_offset = 0
        what = ", ".join(f"@{weight_name(linear)}" for linear in group)
        for base in range(0, width, step):
            block = min(step, width - base)
            streams.part = self.part(group[0])
            buffers = {
                linear.result: streams.alloc(
                    self.linear_bytes(block, tokens), f"a block of {what}",
                    streams.name(linear.result),
                )
                for linear in group
            }
            tiling = self.tiling(tokens, _width(group[0].input), (block,) * len(group), what)
            offsets = lower_streamed_linear(streams, x, [
                StreamedOutput(
                    buffers[linear.result], self.weight_placement(linear), linear_values(linear),
                    (base, block), offset,
                )
                for linear, offset in zip(group, offsets)
            ], tiling, what)
            share = self.share(block, tokens)
            for index, op in enumerate(chain):
                streams.part = self.part(op)
                inputs = [buffers[v] for v in op.operands]
                later = any(op.operands[0] in o.operands for o in chain[index + 1 :])
                buffers[op.results[0]] = (
                    streams.alloc(share, f"a block of '{op.name}'", streams.name(op.results[0]))
                    if later else inputs[0]  # the input's last reader: in place
                )
                streams.sram(
                    SramOp.VCU, kind=VECTOR_FNS[type(op)], dst=buffers[op.results[0]],
                    src0=inputs[0], src1=inputs[1] if len(inputs) > 1 else -1,
                    sizes=[share // BYTES_FP16], data=vector_data(op, first=chunk.first),
                )
            streams.part = self.part(down)
            final = buffers[down.input]
            for number in sorted(set(buffers.values()) - {final}):
                streams.free(number)
            what_down = f"@{weight_name(down)}"
            tiling = self.tiling(tokens, block, (hidden,), what_down)
            output = StreamedOutput(
                y, self.weight_placement(down), linear_values(down), offset=down_offset
            )
            (down_offset,) = lower_streamed_linear(
                streams, final, [output], tiling, what_down, rows_at=base, accumulate=base > 0
            )
            streams.free(final)

    def lower_attention(self, op: pim.AttentionValuesOp, tokens: int, chunk: Chunk) -> None:
        """Per head of each core: q.K^T, softmax, s.V over the earlier chunks' keys, read
        back from the KV cache in blocks that fit (each block's scores folded into the
        running output: a rescale of it, flash-attention style), then over the chunk's own
        keys."""
        streams = self.streams
        scores_op = op.probs.owner.input.owner
        tile = from_dict_attr(AttentionTile, op.tile)
        head_dim = _width(scores_op.query) // tile.heads
        queries = _ceil(tokens, tile.cores_per_head)
        query = self.buffers[scores_op.query]
        caches = (scores_op.keys, op.values)
        current = [self.buffers[sram_source(v)] for v in caches]
        out_bytes = max(
            tile.heads_per_core * queries * head_dim * BYTES_FP16,
            self.share(_width(op.result), tokens),
        )
        out = self.new_buffer(op.result, out_bytes)
        kv_bytes = _width(sram_source(op.values)) // tile.kv_heads * tile.kv_heads_per_core * BYTES_FP16
        block = self.key_block(chunk.first, tokens, queries, kv_bytes)
        scores = streams.alloc(
            queries * max(block, tokens) * BYTES_FP16, "the attention scores of a head", "scores"
        )
        # What each core computes (docs/functional.md): its heads, its queries of the chunk.
        geometry = {
            "heads": tile.heads, "kv_heads": tile.kv_heads, "heads_per_core": tile.heads_per_core,
            "cores_per_head": tile.cores_per_head, "queries": queries, "first": chunk.first,
            "scale": scores_op.scale.value.data,
        }
        for first in range(0, chunk.first, block):
            keys = min(block, chunk.first - first)
            earlier = [self.read_back(v, first, keys, tile, kv_bytes) for v in caches]
            self.heads(
                tile, query, earlier, scores, out, queries, keys, head_dim, rescale=first > 0,
                data={**geometry, "keys_first": first},
            )
            for number in earlier:
                streams.free(number)
        self.heads(
            tile, query, current, scores, out, queries, tokens, head_dim,
            rescale=chunk.first > 0, data={**geometry, "keys_first": chunk.first},
        )
        streams.free(scores)

    def key_block(self, earlier: int, tokens: int, queries: int, kv_bytes: int) -> int:
        """Earlier keys per block: all of them if they fit beside the scores, else the most
        TCU-row multiples that do. DoesNotFit if not even one TCU row of keys does."""
        if not earlier:
            return 1
        rows = self.hw.sram.tcu.rows
        # Per key: its K and V on the core, and a score of every query.
        per_key = 2 * kv_bytes + queries * BYTES_FP16
        room = (self.streams.left() - queries * tokens * BYTES_FP16) // per_key
        if room >= earlier:
            return earlier
        if room < rows:
            raise DoesNotFit(
                f"attention over {earlier} earlier keys: a block of {rows} keys needs "
                f"{rows * per_key + queries * tokens * BYTES_FP16:,} bytes per core; "
                f"{self.streams.left():,} are left"
            )
        return room // rows * rows

    def heads(
        self, tile: AttentionTile, query: int, kv: list[int], scores: int, out: int,
        queries: int, keys: int, head_dim: int, rescale: bool, data: dict,
    ) -> None:
        """q.K^T, softmax and s.V of each head a core runs, over `keys` keys in `kv` (`data`:
        the heads' geometry and the keys' first position)."""
        cores = (0, tile.cores)
        for phase in range(tile.heads_per_core):
            self.streams.sram(
                SramOp.GEMM, cores, dst=scores, src0=query, src1=kv[0],
                sizes=[queries, keys, head_dim], data={**data, "kind": "scores", "phase": phase},
            )
            self.streams.sram(
                SramOp.VCU, cores, kind=VcuFn.SOFTMAX, dst=scores, src0=scores,
                sizes=[queries * keys], data={**data, "online": int(rescale), "phase": phase},
            )
            if rescale:  # the running output, scaled by exp(old max - new max)
                self.streams.sram(
                    SramOp.VCU, cores, kind=VcuFn.MUL, dst=out, src0=out,
                    sizes=[queries * head_dim], data={**data, "rescale": 1, "phase": phase},
                )
            self.streams.sram(
                SramOp.GEMM, cores, dst=out, src0=scores, src1=kv[1],
                sizes=[queries, head_dim, keys],
                data={**data, "kind": "values", "phase": phase, "accumulate": int(rescale)},
            )

    def read_back(
        self, cache_value: SSAValue, first: int, tokens: int, tile: AttentionTile, kv_bytes: int
    ) -> int:
        """Positions `[first, first + tokens)` of a layer's K (V) cache, read from HBM and
        loaded into the cores serving their heads (`kv_bytes` per position on a core)."""
        streams = self.streams
        append = cache_value.owner.input.owner
        placement = hbm_placement(self.function, append.cache)
        width = _width(append.value) * BYTES_FP16
        reads, _ = stream_span(
            hbm_isa.ReadOp, placement, first * width // placement.channels, tokens * width,
            self.hw.hbm,
        )
        token = streams.token()
        cache = append.cache.string_value()
        block = f"{cache}[{first}:{first + tokens}]"
        streams.hbm(*reads, data={"dst": block, "cache": cache, "first": first, "keys": tokens})
        streams.hbm(hbm_isa.SignalOp(tok=token))
        number = streams.alloc(tokens * kv_bytes, f"the earlier chunks' {cache}", block)
        streams.sram(SramOp.WAIT, tok=token)
        streams.sram(
            SramOp.LOAD, (0, tile.cores), dst=number, sizes=[tokens * kv_bytes],
            data={"src": block, "width": _width(append.value)},
        )
        return number


def compute_bound_tokens(hw: Hardware) -> int:
    """Tokens a chunk needs for a streamed linear's TCU work to outlast its weight stream:
    per weight, `m` MACs at the TCUs' peak against 2 bytes at the stream's bandwidth (the
    slower of the link and HBM), `m = 2 x peak MACs/s / bytes/s` (`hpim` preset: 99). A
    larger chunk streams the weights fewer times but no faster per token."""
    return math.ceil(2 * hw.tcu_macs_per_s / (hw.weight_stream_gbs * 1e9))


def serial_prefill_ns(sections: list[Section], hw: Hardware) -> float:
    """A prefill's time if its work ran one piece after another: per section (times its
    repeat), every GEMM's TCU cycles, every all-gather's cycles on free links
    (`Noc.collective`), and the weight bytes its cores load over the stream's bandwidth.
    The stream of weight tiles overlaps little (docs/scheduler.md), so this serial sum
    orders two chunkings as the simulator does: it counts a thinner tile's fixed TCU and
    collective costs, which a roofline does not (at 256 tokens, blocked against unblocked:
    LLaMA-3-8B on `hpim` 39.5 against 48.8 ms, simulated 26.0 and 35.8; OPT-6.7B on
    `attacc-like` 47.3 against 44.8, simulated 62.1 and 38.5)."""
    from hpim_ir.sim.sram.bind import evaluate_sizes, record_cores
    from hpim_ir.sim.sram.noc import Noc
    from hpim_ir.sim.sram.timing import tcu_cycles

    sram = hw.sram
    gathers: dict[tuple[int, int, int], int] = {}  # (first core, end core, bytes) -> cycles
    cycles = loaded = 0.0
    for section in sections:
        records = section.sram.build().records
        repeat = max(section.repeat, 1)
        op = records["op"]
        sizes = evaluate_sizes(records, 0)  # a prefill's sizes are constants
        lo, hi = record_cores(records, sram.cores)
        gemm, load = op == SramOp.GEMM, op == SramOp.LOAD
        cycles += repeat * tcu_cycles(*sizes[gemm].T, sram.tcu).sum()
        loaded += repeat * (sizes[load, 0] * (hi - lo)[load]).sum()
        for index in np.flatnonzero(op == SramOp.ALLGATHER):
            key = (int(lo[index]), int(hi[index]), int(sizes[index, 0]))
            if key not in gathers:
                members = range(key[0], key[1])
                gathers[key] = Noc(sram).collective(SramOp.ALLGATHER, members, key[2], 0)
            cycles += repeat * gathers[key]
    return cycles * 1e3 / sram.clock_mhz + loaded / hw.weight_stream_gbs


def lower_prefill(
    module: ModuleOp, function: func.FuncOp, hw: Hardware, all_logits: bool = False
) -> list[Section]:
    """The sections of a prefill (module docstring): the largest chunks whose buffers fit
    the activation memory as they are; if those are smaller than `compute_bound_tokens`
    (each chunk streams every weight again), also the largest chunks up to that size that
    fit with the FFNs' intermediates in the fewest blocks (each block gathers the FFN's
    input again and leaves less room for the weight tiles; beyond that size, blocks cost and
    chunks no longer gain), and of the two the one `serial_prefill_ns` finds faster
    (thinner tiles can cost more than the chunks they save, as on `attacc-like`). HpimError
    if even one token at a time does not fit.
    `all_logits`: every token's logits (an epilogue per chunk), for functional execution;
    the default computes the last token's, as generation needs."""
    prompt = function.function_type.inputs.data[0].get_shape()[0]
    rows = hw.sram.tcu.rows
    # The whole prompt, else chunks that fill the TCUs' rows (multiples of them), else
    # halves below that.
    sizes = [prompt, *range((prompt - 1) // rows * rows, 0, -rows)]
    sizes += [half for half in (rows >> k for k in range(1, rows.bit_length())) if half < prompt]
    error: DoesNotFit | None = None

    def lowered(size: int, blocks: int) -> tuple[list[Section] | None, bool]:
        """The sections in chunks of `size` with `blocks` (None if they do not fit), and
        whether more blocks might fit."""
        nonlocal error
        chunks = prompt_chunks(prompt, _ceil(prompt, size))
        # The last chunk reads the most earlier keys back: lowered alone first (a fraction
        # of the work), it fails early where the whole prompt would fail late.
        last = Chunk(0, chunks[-1].first, chunks[-1].tokens)
        try:
            for trial in [chunks] if len(chunks) == 1 else [[last], chunks]:
                lowering = _PrefillLowering(module, function, hw, trial, all_logits, blocks)
                sections = lowering.sections()
            return sections, False
        except DoesNotFit as failure:
            error = failure
            return None, lowering.more_blocks_may_fit

    unblocked, fits = None, 0
    for size in sizes:
        unblocked, _ = lowered(size, 1)
        if unblocked is not None:
            fits = size
            break
    enough = min([s for s in sizes if s >= min(prompt, compute_bound_tokens(hw))])
    for size in (s for s in sizes if fits < s <= enough):
        blocks, more = 2, True
        while more:
            sections, more = lowered(size, blocks)
            if sections is not None:
                if unblocked is None:
                    return sections
                return min(sections, unblocked, key=lambda s: serial_prefill_ns(s, hw))
            blocks += 1
    if unblocked is not None:
        return unblocked
    raise HpimError(
        f"the prefill does not fit the SRAM-PIM activation memory even one token at a time: "
        f"{error}"
    ) from None
