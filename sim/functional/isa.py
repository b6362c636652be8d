"""Functional execution of a compiled program: the ISA instructions compute real values.

`IsaMachine` runs a decode step compiled by `convert-pim-to-isa` (both instruction streams,
every section) with numpy, one instruction at a time, as the hardware would compute it; on
a compiled prefill (`IsaMachine.prefill`) it runs the prompt's chunks, leaving the prompt's
K/V in the KV cache in HBM, where a decode step's machine goes on (`continue_from`). What
an instruction computes on is named by its `data` attribute (written by the compiler; the
timing simulator ignores it; docs/functional.md lists the entries): the weight rows a `gemv`
multiplies, the slice of a value a `load_gb` or `load` brings, the value a `readout` or
`store` delivers, which of its heads a core's `mvm` serves.

The machine state:

- HBM-PIM: per channel a global buffer (FP16) and, per bank, FP32 accumulators tagged with
  the output row they compute; the KV cache kept in HBM (FP16, by layer and position);
- the link: values delivered by `readout` (HBM-PIM) or `store` (SRAM-PIM), by name, each
  element marked when it has been produced; the context pieces `read` streams out;
- SRAM-PIM: per buffer the part of its value each core holds (`[cores, count]` FP16; the
  attention scores `[cores, heads per core, context slice]`), the gathered statistics of the
  all-gathers, the KV cache resident in the macros (FP16, by layer and position). A
  prefill's buffers (and a streamed linear's tiles) hold whole `[tokens, features]` values,
  the TCU's FP32 accumulators of a streamed linear, the attention scores per core with the
  positions they compare; the online softmax keeps each core's running max and sum.

Order: the two streams run as the central scheduler runs them (`hpim_ir.sim.scheduler`),
each until it waits for a token not yet raised (or has raised one), then the other; tokens
are renumbered per layer as `MachineProgram.step` does. Reading a link value or a context
piece is checked against the tokens, not just against this order: the element must have
been produced, and, if the other subsystem produced it, a token that subsystem raised after
producing it must have been waited for by the reader. Otherwise the read is an error (the
hardware could run it before the value exists), never a stale value.

Arithmetic: a product of two FP16 values is exact in FP32 (22 significant bits); the
products of one MAC_AB sum in FP32 and join a bank's partial sum in the precision the
hardware states (`hbm.pu_accumulate`); other sums accumulate in FP32; every stored result (readout, buffers, caches) is FP16; vector functions
compute in FP32 (`kernels.py`) from FP16 operands; a TCU `gemm` takes FP16 inputs into FP32
accumulators and stores FP16.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, ModuleOp, StringAttr

from hpim_ir.errors import HpimError
from hpim_ir.hardware import Hardware, load_hardware
from hpim_ir.hardware.config import Accumulation
from hpim_ir.sim.functional import kernels
from hpim_ir.sim.hbm.program import HbmOp
from hpim_ir.sim.program import MachineProgram, MachineStep
from hpim_ir.sim.sram.program import Affine, Space, SramOp, VcuFn
from hpim_ir.weights import Weights

F16, F32 = np.float16, np.float32


def _python(attr) -> str | int | float:
    """An entry of a `data` attribute (or of `hpim.model`) as a Python value."""
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, FloatAttr):
        return attr.value.data
    raise HpimError(f"unexpected entry {attr} in a `data` attribute")


def _data_of(op) -> dict | None:
    """An instruction's `data` attribute as a dict (None: it has none)."""
    attr = op.attributes.get("data")
    if not isinstance(attr, DictionaryAttr):
        return None
    return {key: _python(value) for key, value in attr.data.items()}


_BINARY = {VcuFn.ADD: np.add, VcuFn.MUL: np.multiply}
"""The VCU's element-wise functions of two vectors (FP32)."""
_UNARY = {VcuFn.RELU: lambda x: np.maximum(x, 0), VcuFn.GELU: kernels.gelu, VcuFn.SILU: kernels.silu}
"""The VCU's element-wise activations (FP32)."""


def _mac(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`matrix . vector` over the last axis of `matrix`, from FP16 values: each product of two
    FP16 numbers is exact in FP32 (at most 22 significant bits), the sum accumulates in FP32."""
    return np.asarray(matrix, F32) @ vector.astype(F16).astype(F32)


@dataclass(frozen=True)
class _At:
    """Where an unrolled instruction is, for messages (formatted only when one is made)."""

    step: MachineStep
    stream: str
    index: int

    def __str__(self) -> str:
        if self.stream == "hbm":
            return self.step.hbm_instruction(self.index)
        return self.step.sram_instruction(self.index)


@dataclass
class _Linked:
    """A value on the link: its elements, the subsystem that produced them, and for each
    element how many tokens that subsystem had raised when it was produced (-1: not yet)."""

    values: np.ndarray
    side: str
    stamp: np.ndarray
    meta: tuple | None = None
    """A weight tile's (weight, output columns, first input row, and the first and count of
    the output columns its linear computes)."""

    @staticmethod
    def empty(size: int, side: str) -> _Linked:
        return _Linked(np.zeros(size, F16), side, np.full(size, -1, np.int64))


@dataclass
class _Buffer:
    """An SRAM-PIM buffer: `values[k]` is core k's part of the value `data` describes."""

    data: dict
    values: np.ndarray
    count: int
    length: int = 0
    """The value's element count (padding past it is no part of it)."""
    whole: np.ndarray | None = None
    """A prefill buffer (`data` `holds`): the value it holds, `[tokens, features]`."""
    meta: tuple | dict | None = None
    """A prefill weight tile's (`_Linked.meta`), the first weight row a gathered input
    slice multiplies, the scores per core."""
    acc: np.ndarray | None = None
    """A GEMM result's FP32 accumulators (across the tiles of a streamed linear)."""

    def elements(self, core: int) -> np.ndarray:
        """The value's element index of each entry of core `core`'s part."""
        unit = self.count if self.data["unit"] < 0 else self.data["unit"]
        start = (core * self.data["mul"]) // self.data["div"] * unit
        return start + np.arange(self.count)


class IsaMachine:
    """A compiled decode step (`hpim compile`; a module of ISA streams) with weights, run
    functionally token by token. The KV caches persist across `step` calls.

    `step(token)` runs the program once for the next token (its position is the number of
    tokens stepped so far) and returns its logits (FP16, `[vocab]`)."""

    def __init__(self, module: ModuleOp, weights: Weights, hw: Hardware | None = None):
        model = module.attributes.get("hpim.model")
        logits = module.attributes.get("hpim.logits")
        if not isinstance(model, DictionaryAttr) or not isinstance(logits, StringAttr):
            raise HpimError(
                "functional execution needs a program compiled by convert-pim-to-isa "
                "(module attributes hpim.model and hpim.logits)"
            )
        self.model = {key: _python(value) for key, value in model.data.items()}
        self.logits_name = logits.data
        self.hw = hw or load_hardware(module.attributes["hpim.hw"].data)
        self.program = MachineProgram.from_module(module)
        self.hbm_data: list[dict | None] = []
        self.sram_data: list[dict | None] = []
        from hpim_ir.dialects import hbm_isa, sram_isa

        for op in module.ops:
            if isinstance(op, hbm_isa.StreamOp):
                self.hbm_data += [_data_of(i) for i in op.body.block.ops]
            elif isinstance(op, sram_isa.StreamOp):
                self.sram_data += [_data_of(i) for i in op.body.block.ops]
        # FP16 values held widened to FP32 once (exact), so as not to convert them per GEMV.
        self.weights = {name: np.asarray(array, F16).astype(F32) for name, array in weights.items()}
        self.vocab = int(self.model["vocab_size"])
        self.capacity = int(self.model["max_positions"])
        self.caches: dict[tuple[str, str, int], np.ndarray] = {}  # (hbm|sram, cache, layer)
        self.position = 0
        self.sequence: list[int] = []  # the tokens run so far
        self.logit_rows: list[np.ndarray] = []  # a prefill's logits, as their buffers free
        hbm = self.hw.hbm
        self.banks = hbm.banks_per_channel
        self.channels = hbm.total_channels
        self.column_values = hbm.column_bytes // 2
        self.accumulate = hbm.pu_accumulate
        self.cores = self.hw.sram.cores if self.hw.sram is not None else 0
        # Output groups per bank: the accumulators of the largest weight GEMV.
        records = self.program.hbm.records
        self.groups = max(
            [
                d["group"] + int(r["n"])
                for r, d in zip(records, self.hbm_data)
                if d and "group" in d
            ],
            default=1,
        )

    # -- the step ----------------------------------------------------------------------------

    def step(self, token: int) -> np.ndarray:
        """Run the decode step for `token` at the next position; its logits `[vocab]`."""
        if not 0 <= token < self.vocab:
            raise HpimError(f"token id {token} is outside the vocabulary (0..{self.vocab - 1})")
        if self.position >= self.capacity:
            raise HpimError(
                f"position {self.position} is beyond the model's {self.capacity} positions"
            )
        step = self.program.step(self.hw, ctx=self.position)
        self.sequence.append(token)
        self._begin(step, token)
        self._run(step)
        logits = self._logits()
        self.position += 1
        return logits

    def prefill(self, tokens: Sequence[int]) -> np.ndarray:
        """Run a compiled prefill (`func @prefill`, compiled for `len(tokens)` tokens) on the
        prompt from position 0: the logits it computes (`[rows, vocab]`: every token's with
        `all_logits`, else the last token's), and the KV caches in HBM hold the prompt, so
        `continue_from` a decode step's machine goes on from them."""
        for token in tokens:
            if not 0 <= token < self.vocab:
                raise HpimError(f"token id {token} is outside the vocabulary (0..{self.vocab - 1})")
        compiled = max(
            (d["first"] + d["tokens"] for d in self.hbm_data if d and "tokens" in d), default=0
        )
        if self.position or len(tokens) != compiled:
            raise HpimError(
                f"the prefill is compiled for a prompt of {compiled} tokens from position 0; "
                f"got {len(tokens)} at position {self.position}"
            )
        self.sequence = list(tokens)
        step = self.program.step(self.hw, ctx=0)
        self._begin(step, self.sequence[-1])
        self.logit_rows = []
        self._run(step)
        if not self.logit_rows:
            raise HpimError(f"no SRAM-PIM buffer held the logits ({self.logits_name})")
        self.position = len(tokens)
        return np.stack(self.logit_rows)

    def continue_from(self, other: IsaMachine) -> None:
        """Go on after `other` (a prefill's machine): its tokens and KV caches."""
        self.caches, self.sequence = other.caches, list(other.sequence)
        self.position = other.position

    def _begin(self, step: MachineStep, token: int) -> None:
        """The state of one step: everything but the KV caches starts empty."""
        self.token = token
        self.link: dict[tuple[str, int], _Linked] = {}
        self.context: dict[tuple[str, int], _Linked] = {}  # streamed cache -> positions read
        # Happens-before across the streams: tokens each side has raised, and the latest
        # token of the other side each side has waited for (its index on that side).
        self.raised = {"hbm": 0, "sram": 0}
        self.token_index: dict[int, tuple[str, int]] = {}
        self.seen = {"hbm": -1, "sram": -1}
        self.acc = np.zeros((self.channels, self.banks, self.groups), F32)
        self.tag = np.full((self.channels, self.banks, self.groups), -1, np.int64)
        self.pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.gb: dict[int, tuple[str, int]] = {}  # channel -> (value, first element) loaded
        self.buffers: dict[int, _Buffer] = {}
        self.gathered: dict[tuple[int, int], tuple[str, np.ndarray, int]] = {}
        self.cache_layout: dict[int, dict] = {}
        self.online: dict[tuple[int, int], tuple] = {}  # (core, phase) -> max, sum, factor

    def _run(self, step: MachineStep) -> None:
        """Both streams in an order the central scheduler could produce: each runs until it
        waits for a token not yet raised or has just raised one; then the other runs. What
        one subsystem reads of the other's values is checked against the tokens (`_receive`),
        so a read the tokens do not order after its producer is caught in any order."""
        streams = [
            (step.hbm.records, "n", HbmOp.WAIT, HbmOp.SIGNAL, self._hbm),
            (step.sram.records, "tok", SramOp.WAIT, SramOp.SIGNAL, self._sram),
        ]
        at = [0, 0]
        raised: set[int] = set()
        while at[0] < len(streams[0][0]) or at[1] < len(streams[1][0]):
            before = list(at)
            for side, (records, token, wait, signal, execute) in enumerate(streams):
                while at[side] < len(records):
                    record = records[at[side]]
                    if record["op"] == wait and int(record[token]) not in raised:
                        break
                    at[side] += 1
                    if record["op"] in (wait, signal):
                        self._sync(
                            ("hbm", "sram")[side], int(record[token]), record["op"] == signal
                        )
                    if record["op"] == signal:
                        raised.add(int(record[token]))
                        break
                    if record["op"] != wait:
                        execute(step, at[side] - 1, record)
            if at == before:
                raise HpimError(
                    f"deadlock: {step.hbm_instruction(at[0])} and "
                    f"{step.sram_instruction(at[1])} wait for tokens nothing has raised"
                )

    def _logits(self) -> np.ndarray:
        """The returned value (`hpim.logits`) from the SRAM-PIM buffer holding it."""
        for buffer in self.buffers.values():
            if buffer.data.get("value") == self.logits_name:
                logits = self._gather(buffer, self.vocab, "the logits")
                return logits
        raise HpimError(f"no SRAM-PIM buffer holds the logits ({self.logits_name}) at the end")

    # -- helpers -----------------------------------------------------------------------------

    def _iteration(self, origin, index: int) -> tuple[int, int]:
        """(section, iteration) of an unrolled record: link values are per layer, and the
        iteration is the layer of layered weights and caches."""
        return int(origin.section[index]), int(origin.iteration[index])

    def _weight(self, name: str, layer: int, layered_ndim: int) -> np.ndarray:
        """Weight `name` (FP32-held FP16), its layer's slice if it is layered (has
        `layered_ndim` dimensions)."""
        if name not in self.weights:
            raise HpimError(f"the program reads weight @{name}, which the weights do not hold")
        array = self.weights[name]
        return array[layer] if array.ndim == layered_ndim else array

    def _linked(self, name: str, key: tuple[int, int], where: str) -> _Linked:
        """The link value `name` of this layer, or an error if nothing delivered it."""
        if (name, key) not in self.link:
            raise HpimError(f"{where} reads {name} before anything delivered it")
        return self.link[(name, key)]

    def _receive(
        self, linked: _Linked, elements: np.ndarray, reader: str, what: str, where: str
    ) -> np.ndarray:
        """Elements of a link value as `reader` may see them: produced, and, when the other
        subsystem produced them, released by a token raised after that which the reader has
        waited for. Otherwise an error naming the first element: the program would read it
        before it exists in some order the scheduler may run."""
        stamp = linked.stamp[elements]
        late = stamp < 0
        if linked.side != reader:
            late |= stamp > self.seen[reader]
        if late.any():
            element = int(elements[np.argmax(late)])
            raise HpimError(f"{where} reads element {element} of {what} before it was produced")
        return linked.values[elements]

    def _sync(self, side: str, token: int, signal: bool) -> None:
        """A token raised by `side`, or waited for by it."""
        if signal:
            self.token_index[token] = (side, self.raised[side])
            self.raised[side] += 1
            return
        raiser, index = self.token_index[token]
        if raiser != side:
            self.seen[side] = max(self.seen[side], index)

    def _cache(self, side: str, name: str, layer: int, width: int) -> np.ndarray:
        """A KV cache's rows of one layer (`[positions, width]`, NaN until written)."""
        key = (side, name, layer)
        if key not in self.caches:
            self.caches[key] = np.full((self.capacity, width), np.nan, F16)
        return self.caches[key]

    # -- HBM-PIM -----------------------------------------------------------------------------

    def _hbm(self, step: MachineStep, index: int, record) -> None:
        """Execute unrolled HBM-PIM record `index` (signals and waits are `_run`'s)."""
        op = HbmOp(int(record["op"]))
        program_index = int(step.hbm_program_index[index])
        data = self.hbm_data[program_index]
        if op == HbmOp.BARRIER:
            return
        where = _At(step, "hbm", index)
        if data is None:
            raise HpimError(f"{where}: no `data` attribute says what it computes")
        try:
            self._hbm_op(op, record, data, step, index, where)
        except KeyError as missing:
            raise HpimError(f"{where}: its `data` attribute has no {missing}") from None

    def _hbm_op(self, op: HbmOp, record, data: dict, step: MachineStep, index: int, where) -> None:
        lo, hi = int(record["ch_lo"]), int(record["ch_hi"])
        key = self._iteration(step.hbm_origin, index)
        layer = key[1]
        if op == HbmOp.LOAD_GB:
            for channel in range(lo, hi):
                self.gb[channel] = (data["src"], data["at"], key, int(record["col"]))
        elif op == HbmOp.GEMV and "w" in data:
            self._gemv(record, data, key, layer, where)
        elif op == HbmOp.GEMV:
            self._attention_gemv(record, data, layer, where)
        elif op == HbmOp.READ and "table" in data:  # a lookup (every read of it the same rows)
            if "tokens" in data:  # a prefill's chunk of the prompt
                first, count = data["first"], data["tokens"]
                if first + count > len(self.sequence):
                    raise HpimError(
                        f"{where} looks up tokens {first}..{first + count - 1} of a prompt of "
                        f"{len(self.sequence)}"
                    )
                positions = np.arange(first, first + count)
            else:
                positions = np.array([self.position])
            token = data["index"] == "token"
            indices = np.asarray(self.sequence)[positions] if token else positions
            row = self._weight(data["table"], 0, 3)[indices + data["offset"]].reshape(-1)
            linked = self.link[(data["dst"], key)] = _Linked.empty(len(row), "hbm")
            linked.values[:], linked.stamp[:] = row, self.raised["hbm"]
        elif op == HbmOp.READOUT:
            self._readout(record, data, key, where)
        elif op == HbmOp.WRITE:  # the step's K (V) row, or a prefill chunk's rows
            source = self._linked(data["src"], key, where)
            row = self._receive(source, np.arange(len(source.values)), "hbm", data["src"], where)
            width = data.get("width", len(row))
            cache = self._cache("hbm", data["cache"], layer, width)
            first = data.get("first", self.position)
            cache[first : first + len(row) // width] = row.reshape(-1, width)
        elif op == HbmOp.READ and "w" in data:
            self._read_tile(data, layer, key)
        elif op == HbmOp.READ and "dst" in data:  # a prefill's earlier keys (values)
            if ("hbm", data["cache"], layer) not in self.caches:
                raise HpimError(f"{where} reads @{data['cache']} of layer {layer}, never written")
            cache = self.caches[("hbm", data["cache"], layer)]
            rows = cache[data["first"] : data["first"] + data["keys"]]
            if np.isnan(rows).any():
                raise HpimError(f"{where} reads positions of @{data['cache']} never written")
            linked = self.link[(data["dst"], key)] = _Linked.empty(rows.size, "hbm")
            linked.values[:], linked.stamp[:] = rows.reshape(-1), self.raised["hbm"]
        elif op == HbmOp.READ:
            self._read(data, layer, key)
        else:
            raise HpimError(f"{where}: functional execution does not support hbm.{op.name.lower()}")

    def _gb_input(self, channel: int, where: str) -> tuple[np.ndarray, int]:
        """The FP16 values in a channel's global buffer and the element they start at."""
        if channel not in self.gb:
            raise HpimError(f"{where}: channel {channel}'s global buffer was never loaded")
        name, at, key, cols = self.gb[channel]
        source = self._linked(name, key, where)
        stop = min(at + cols * self.column_values, len(source.values))
        return self._receive(source, np.arange(at, stop), "hbm", name, where), at

    def _gemv(self, record, data: dict, key, layer: int, where: str) -> None:
        """Every bank of channels [lo, hi) multiplies its weight rows of groups
        [group, group + rows) with the global buffer; segment 0 preloads the bias."""
        lo, hi = int(record["ch_lo"]), int(record["ch_hi"])
        rows, cols = int(record["n"]), int(record["col"])
        weight = self._weight(data["w"], layer, 3)
        channels = np.arange(lo, hi)
        groups = data["group"] + np.arange(rows)
        within = groups[None, :, None] * self.banks + np.arange(self.banks)[None, None, :]
        out = data["out"] + (channels - lo)[:, None, None] * data["rows"] + within
        valid = (within < data["rows"]) & (out < weight.shape[0])
        values, at = self._gb_input(lo, where)
        if self.gb[lo][1] != data["at"]:
            raise HpimError(f"{where} multiplies columns from {data['at']}, the buffer holds {at}")
        span = min(cols * self.column_values, weight.shape[1] - at, len(values))
        rows_w = weight[np.where(valid, out, 0), at : at + span]  # [ch, groups, banks, span]
        acc = self.acc[lo:hi, :, data["group"] : data["group"] + rows]  # [ch, banks, groups]
        tag = self.tag[lo:hi, :, data["group"] : data["group"] + rows]
        out_t, valid_t = out.transpose(0, 2, 1), valid.transpose(0, 2, 1)
        if "bias" in data:
            bias = self._weight(data["bias"], layer, 2).astype(F32)
            acc[...] = np.where(valid_t, bias[np.where(valid_t, out_t, 0)], 0)
            tag[...] = np.where(valid_t, out_t, -1)
        elif data["at"] == 0:
            acc[...] = 0
            tag[...] = np.where(valid_t, out_t, -1)
        elif (tag[valid_t] != out_t[valid_t]).any():
            raise HpimError(f"{where} adds to accumulators that hold other rows than it computes")
        # One MAC_AB per column: its products summed (exact in FP32), then added to the
        # bank's partial sum, which holds the precision the hardware states.
        if self.accumulate == Accumulation.FP32:
            acc += np.where(valid_t, _mac(rows_w, values[:span]).transpose(0, 2, 1), 0)
            return
        for start in range(0, span, self.column_values):
            stop = start + self.column_values
            column = _mac(rows_w[..., start:stop], values[start:stop]).transpose(0, 2, 1)
            acc[...] = (acc + np.where(valid_t, column, 0)).astype(F16)

    def _attention_gemv(self, record, data: dict, layer: int, where: str) -> None:
        """q.K^T or s.V beside the KV cache in HBM: channel c computes query head
        `c * rounds + round` (reading the head's slice of the input it was loaded with)."""
        lo, hi = int(record["ch_lo"]), int(record["ch_hi"])
        heads, group = data["heads"], data["heads"] // data["kv_heads"]
        context = self.position + 1
        for channel in range(lo, hi):
            head = channel * data["rounds"] + data["round"]
            if head >= heads:
                continue
            name, _, key, _ = self.gb[channel]
            linked = self._linked(name, key, where)
            source = self._receive(linked, np.arange(len(linked.values)), "hbm", name, where)
            cache_name = data["cache"]
            if ("hbm", cache_name, layer) not in self.caches:
                raise HpimError(f"{where} reads @{cache_name} of layer {layer}, never written")
            cache = self.caches[("hbm", cache_name, layer)]
            head_dim = cache.shape[1] // data["kv_heads"]
            kv = cache[:context, (head // group) * head_dim : (head // group + 1) * head_dim]
            if data["kind"] == "scores":
                query = source[head * head_dim : (head + 1) * head_dim]
                result = _mac(kv, query) * F32(data["scale"])
                tags = head * context + np.arange(context)
            else:
                probs = source[head * context : (head + 1) * context]
                result = _mac(kv.T, probs)
                tags = head * head_dim + np.arange(head_dim)
            self.pending.setdefault(channel, []).append((tags, result))

    def _readout(self, record, data: dict, key, where: str) -> None:
        """The results of channels [lo, hi) leave the bank PUs for the link (FP16)."""
        lo, hi = int(record["ch_lo"]), int(record["ch_hi"])
        tags = self.tag[lo:hi].reshape(hi - lo, -1)
        values = self.acc[lo:hi].reshape(hi - lo, -1)
        parts_t, parts_v = [tags[tags >= 0]], [values[tags >= 0]]
        per_channel = (tags >= 0).sum(axis=1)
        for channel in range(lo, hi):
            for t, v in self.pending.pop(channel, []):
                parts_t.append(t)
                parts_v.append(v)
                per_channel[channel - lo] += len(t)
        bursts = int(record["n"])
        if per_channel.max(initial=0) > bursts * self.column_values:
            raise HpimError(
                f"{where} reads out {bursts} bursts per channel, but a channel holds "
                f"{int(per_channel.max())} results"
            )
        self.tag[lo:hi] = -1
        out_t, out_v = np.concatenate(parts_t), np.concatenate(parts_v)
        size = data["size"] * (self.position + 1 if data["per_ctx"] else 1)
        linked = self.link.setdefault((data["dst"], key), _Linked.empty(size, "hbm"))
        if len(out_t) and out_t.max() >= len(linked.values):
            raise HpimError(f"{where} delivers element {int(out_t.max())} of {data['dst']}")
        linked.values[out_t] = out_v.astype(F16)
        linked.stamp[out_t] = self.raised["hbm"]

    def _read_tile(self, data: dict, layer: int, key) -> None:
        """A tile of a streamed linear's weight read out in normal mode: input rows `at` on of
        every core's output columns `first` on (core k's from `k * per_core`) of the block
        of `width` output columns from `base` on (default: all of them)."""
        weight = self._weight(data["w"], layer, 3)
        base = data.get("base", 0)
        width = data.get("width", weight.shape[0] - base)
        columns = (
            np.arange(0, width, data["per_core"])[:, None] + data["first"]
            + np.arange(data["columns"])[None, :]
        ).reshape(-1)
        columns = base + columns[columns < width]
        tile = weight[columns, data["at"] : data["at"] + data["inputs"]].astype(F16)
        linked = self.link[(data["dst"], key)] = _Linked.empty(tile.size, "hbm")
        linked.values[:], linked.stamp[:] = tile.reshape(-1), self.raised["hbm"]
        linked.meta = (data["w"], columns, data["at"], base, width)

    def _read(self, data: dict, layer: int, key) -> None:
        """A piece of the context of a cache in HBM streamed towards SRAM-PIM: the keys the
        cores' streamed piece `piece` multiplies (`_piece_positions`). A piece reads its share
        of the whole's stripes (stripes piece, piece + pieces, ...); at a context of fewer
        stripes than pieces the later pieces read none and drop out of the step, and the
        last piece that reads one brings their keys (the whole context is in its stripes and
        the ones before)."""
        context, piece, pieces = self.position + 1, data["piece"], data["pieces"]
        ready = self.context.setdefault((data["cache"], key), _Linked.empty(context, "hbm"))
        stripes = -(-data["rows_per_ctx"] * self.position // data["rows_div"])
        last = piece == min(pieces, stripes) - 1
        for brought in range(piece, pieces if last else piece + 1):
            positions = _piece_positions(context, data["split"], brought, pieces)
            ready.stamp[positions] = self.raised["hbm"]

    # -- SRAM-PIM ----------------------------------------------------------------------------

    def _sram(self, step: MachineStep, index: int, record) -> None:
        """Execute unrolled SRAM-PIM record `index` on every core of its range."""
        where = _At(step, "sram", index)
        try:
            self._sram_op(step, index, record, where)
        except KeyError as missing:
            raise HpimError(f"{where}: its `data` attribute has no {missing}") from None

    def _sram_op(self, step: MachineStep, index: int, record, where: _At) -> None:
        op = SramOp(int(record["op"]))
        data = self.sram_data[int(step.sram_program_index[index])] or {}
        lo, hi = int(record["core_lo"]), int(record["core_hi"])
        cores = range(lo, hi if hi >= 0 else self.cores)
        key = self._iteration(step.sram_origin, index)
        layer = key[1]
        dst, src0, src1 = int(record["dst"]), int(record["src0"]), int(record["src1"])
        if op == SramOp.ALLOC:
            size = Affine(int(record["a0"]), int(record["b0"]), int(record["d0"]))(self.position)
            self._alloc(record, data, size, dst)
        elif op == SramOp.FREE:
            freed = self.buffers.pop(dst, None)
            self.cache_layout.pop(dst, None)
            if freed is not None and freed.data.get("holds") == self.logits_name:
                # A prefill's logits: read out of their buffer before it is reused.
                self.logit_rows.extend(self._whole(freed, where))
        elif any("holds" in self.buffers[b].data for b in (dst, src0) if b in self.buffers):
            self._whole_op(op, record, data, cores, dst, src0, src1, layer, key, where)
        elif op == SramOp.BARRIER:
            return
        elif op == SramOp.LOAD:
            self._load(self._buffer(dst, where), data, cores, key, where)
        elif op == SramOp.STORE:
            buffer = self._buffer(src0, where)
            values = self._gather(buffer, buffer.length, where, cores)
            linked = self.link[(data["dst"], key)] = _Linked.empty(len(values), "sram")
            linked.values[:], linked.stamp[:] = values, self.raised["sram"]
        elif op == SramOp.VCU:
            self._vcu(VcuFn(int(record["kind"])), data, cores, dst, src0, src1, layer, where)
        elif op == SramOp.ALLGATHER:
            self._allgather(data, cores, src0, where)
        elif op == SramOp.REDUCE:
            source, target = self._buffer(src0, where), self._buffer(dst, where)
            total = source.values[list(cores)].astype(F32).sum(axis=0)
            target.values[list(cores)] = total.astype(F16)
        elif op == SramOp.TRANSPOSE:
            source, target = self._buffer(src0, where), self._buffer(dst, where)
            target.values[list(cores)] = source.values[list(cores)]
        elif op == SramOp.MACRO_WRITE:
            self._macro_write(dst, src0, cores, layer, where)
        elif op in (SramOp.MVM, SramOp.STREAM_MVM):
            self._attention(op, data, cores, dst, src0, src1, layer, key, where)
        else:
            raise HpimError(f"{where}: functional execution does not support it")

    # -- the prefill: buffers hold whole values ----------------------------------------------

    def _whole(self, buffer: _Buffer, where, last: bool = False) -> np.ndarray:
        """The value a prefill buffer holds (`last`: its last token only); a decode step's
        buffer (a streamed linear's input): its cores' parts gathered, as one token."""
        if "holds" not in buffer.data:
            return self._gather(buffer, buffer.length, where).reshape(1, -1)
        if buffer.whole is None:
            raise HpimError(f"{where} reads {buffer.data['holds']} before anything wrote it")
        return buffer.whole[-1:] if last else buffer.whole

    def _whole_op(self, op, record, data, cores, dst, src0, src1, layer, key, where) -> None:
        """An instruction on buffers holding whole `[tokens, features]` values: a prefill's,
        and a streamed linear's tiles (also in a decode step)."""
        last = bool(data.get("last"))
        if op == SramOp.LOAD:
            target = self._buffer(dst, where)
            source = self._linked(data["src"], key, where)
            every = np.arange(len(source.values))
            values = self._receive(source, every, "sram", data["src"], where)
            if source.meta is not None:  # a weight tile: [its output columns, its input rows]
                target.whole = values.reshape(len(source.meta[1]), -1)
            else:
                target.whole = values.reshape(-1, data["width"])
            target.meta = source.meta
        elif op == SramOp.STORE:
            values = self._whole(self._buffer(src0, where), where).reshape(-1)
            linked = self.link[(data["dst"], key)] = _Linked.empty(len(values), "sram")
            linked.values[:], linked.stamp[:] = values, self.raised["sram"]
        elif op == SramOp.ALLGATHER and data.get("stat") == "moments":
            # Each token's sum and sum of squares (FP32), as the cores' partials add up.
            x = self._whole(self._buffer(src0, where), where, last).astype(F32)
            moments = np.stack([x.sum(axis=1), (x * x).sum(axis=1)], axis=1)
            self.gathered[(cores.start, cores.stop)] = ("moments", moments, x.shape[1])
        elif op == SramOp.ALLGATHER:  # a streamed linear's input slice, gathered by every core
            x = self._whole(self._buffer(src0, where), where, last)
            target = self._buffer(dst, where)
            target.whole = x[:, data["at"] : data["at"] + data["inputs"]]
            target.meta = data.get("rows_at", 0) + data["at"]  # the weight rows it multiplies
        elif op == SramOp.VCU:
            fn = VcuFn(int(record["kind"]))
            self._whole_vcu(fn, data, cores, dst, src0, src1, layer, last, where)
        elif op == SramOp.GEMM and data.get("kind") == "linear":
            self._tcu_linear(data, cores, dst, src0, src1, layer, where)
        elif op == SramOp.GEMM:
            self._tcu_attention(data, cores, dst, src0, src1, where)
        else:
            raise HpimError(f"{where}: functional execution does not support it in a prefill")

    def _tcu_linear(self, data, cores, dst, src0, src1, layer, where) -> None:
        """One tile of a streamed linear on the TCUs: FP16 inputs, FP32 accumulators (from the
        bias at a column block's first tile), the FP16 result in the buffer (a decode step's:
        each core's part of it; a blocked FFN's: the block's columns)."""
        x, w = self._buffer(src0, where), self._buffer(src1, where)
        target = self._buffer(dst, where)
        _, columns, at, base, outputs = w.meta
        if x.meta != at:
            raise HpimError(
                f"{where} multiplies input columns from {x.meta} by weight rows from {at}"
            )
        inputs = self._whole(x, where)
        if target.acc is None or target.acc.shape != (len(inputs), outputs):
            target.acc = np.full((len(inputs), outputs), np.nan, F32)
        if data["start"]:
            bias = self._weight(data["bias"], layer, 2)[columns] if "bias" in data else 0
            target.acc[:, columns - base] = bias
        product = np.asarray(inputs, F32) @ np.asarray(w.whole, F32).T
        target.acc[:, columns - base] += product
        if "holds" in target.data:
            target.whole = target.acc.astype(F16)
        else:
            self._scatter(target, target.acc.astype(F16).reshape(-1), cores)

    def _whole_vcu(self, fn, data, cores, dst, src0, src1, layer, last, where) -> None:
        """A vector function on whole values (FP32 from FP16, stored FP16)."""
        target = self._buffer(dst, where)
        if fn == VcuFn.SOFTMAX:
            return self._online_softmax(data, target, where)
        if fn == VcuFn.MUL and data.get("rescale"):
            return self._rescale(data, cores, target, where)
        x = self._whole(self._buffer(src0, where), where, last).astype(F32)
        if fn in _BINARY:
            z = self._whole(self._buffer(src1, where), where).astype(F32)
            if z.shape != x.shape:
                raise HpimError(f"{where}: operands of shapes {x.shape} and {z.shape}")
            result = _BINARY[fn](x, z)
        elif fn in _UNARY:
            result = _UNARY[fn](x)
        elif fn == VcuFn.ROPE:
            result = kernels.rope(x, data["first"], data["heads"], data["theta"])
        elif fn in (VcuFn.LAYERNORM, VcuFn.RMSNORM):
            stats = self.gathered.get((cores.start, cores.stop))
            if stats is None or stats[0] != "moments" or stats[1].shape != (len(x), 2):
                raise HpimError(f"{where} normalizes without the all-gathered statistics")
            gamma = self._weight(data["w"], layer, 2).astype(F32)
            beta = self._weight(data["b"], layer, 2).astype(F32) if "b" in data else None
            result = _normalize(fn, x, stats[1], stats[2], data["eps"], gamma, beta)
        else:
            raise HpimError(f"{where}: functional execution does not support vcu {fn.name.lower()}")
        target.whole = result.astype(F16)

    def _heads(self, data: dict, core: int, tokens: int) -> tuple[int, np.ndarray]:
        """The query head core `core` runs in this phase and the chunk's queries it serves."""
        split = data["cores_per_head"]
        if split > 1:
            first = (core % split) * data["queries"]
            return core // split, np.arange(first, min(first + data["queries"], tokens))
        return core * data["heads_per_core"] + data["phase"], np.arange(tokens)

    def _tcu_attention(self, data, cores, dst, src0, src1, where) -> None:
        """q.K^T of each core's head and queries against a block of keys (scores kept per
        core with the positions they compare), or s.V accumulated into the output."""
        group = data["heads"] // data["kv_heads"]
        if data["kind"] == "scores":
            query = self._whole(self._buffer(src0, where), where)
            keys = self._whole(self._buffer(src1, where), where)
            target = self._buffer(dst, where)
            head_dim = query.shape[1] // data["heads"]
            target.meta = {"tokens": len(query), "width": query.shape[1], "cores": {}}
            for core in cores:
                head, rows = self._heads(data, core, len(query))
                kv = keys[:, head // group * head_dim : (head // group + 1) * head_dim]
                q = query[rows, head * head_dim : (head + 1) * head_dim]
                scores = (np.asarray(q, F32) @ np.asarray(kv, F32).T) * F32(data["scale"])
                positions = (data["first"] + rows, data["keys_first"] + np.arange(len(keys)))
                target.meta["cores"][core] = (scores.astype(F16), positions)
            return
        probs, values = self._buffer(src0, where), self._whole(self._buffer(src1, where), where)
        target = self._buffer(dst, where)
        tokens, width = probs.meta["tokens"], probs.meta["width"]
        head_dim = width // data["heads"]
        if target.whole is None:
            target.whole = np.full((tokens, width), np.nan, F16)
        for core in cores:
            head, rows = self._heads(data, core, tokens)
            p = probs.meta["cores"][core][0]
            v = values[:, head // group * head_dim : (head // group + 1) * head_dim]
            out = np.asarray(p, F32) @ np.asarray(v, F32)
            columns = slice(head * head_dim, (head + 1) * head_dim)
            if data["accumulate"]:
                out += target.whole[rows, columns].astype(F32)
            target.whole[rows, columns] = out.astype(F16)

    def _online_softmax(self, data, scores: _Buffer, where) -> None:
        """Each core's scores of a block of keys, flash-attention style: the causal mask by
        position, the running max and sum of each query row (kept per core and phase) updated
        with the block, the block's probabilities under them (FP16), and the factor the
        running output is rescaled by (`_rescale`)."""
        if not isinstance(scores.meta, dict):
            raise HpimError(f"{where}: a softmax of scores never computed")
        for core, (block, (queries, keys)) in scores.meta["cores"].items():
            s = np.where(keys[None, :] > queries[:, None], -np.inf, block.astype(F32))
            peak = s.max(axis=1)
            total = np.zeros(len(s), F32)
            if data["online"]:
                if (core, data["phase"]) not in self.online:
                    raise HpimError(f"{where} goes on from core {core}'s softmax, never begun")
                old_peak, old_total, _ = self.online[(core, data["phase"])]
                peak = np.maximum(peak, old_peak)
                total = old_total * np.exp(old_peak - peak)
            safe = np.where(np.isfinite(peak), peak, 0)
            p = np.exp(s - safe[:, None])
            new_total = total + p.sum(axis=1, dtype=F32)
            # The running output holds old_total's share; it becomes new_total's.
            factor = np.where(new_total > 0, total / np.where(new_total > 0, new_total, 1), 0)
            self.online[(core, data["phase"])] = (peak, new_total, factor)
            scores.meta["cores"][core] = ((p / new_total[:, None]).astype(F16), (queries, keys))

    def _rescale(self, data, cores, out: _Buffer, where) -> None:
        """The running attention output of each core's head and queries, times the factor its
        last softmax block computed."""
        width = self._whole(out, where).shape[1]
        head_dim = width // data["heads"]
        for core in cores:
            if (core, data["phase"]) not in self.online:
                raise HpimError(f"{where} rescales core {core}'s output before any softmax")
            head, rows = self._heads(data, core, len(out.whole))
            factor = self.online[(core, data["phase"])][2]
            columns = slice(head * head_dim, (head + 1) * head_dim)
            scaled = out.whole[rows, columns].astype(F32) * factor[:, None]
            out.whole[rows, columns] = scaled.astype(F16)

    def _buffer(self, number: int, where: str) -> _Buffer:
        """A live activation-memory buffer, or an error naming the instruction."""
        if number not in self.buffers:
            raise HpimError(f"{where} uses buffer {number}, which is not allocated")
        return self.buffers[number]

    def _alloc(self, record, data: dict, size: int, number: int) -> None:
        """A buffer as its `data` describes it (`size` bytes per core); a PIM buffer: the
        resident cache it holds."""
        if int(record["kind"]) == Space.PIM:
            self.cache_layout[number] = data
            return
        if "holds" in data:  # a prefill's buffer: a whole value once written
            self.buffers[number] = _Buffer(data, np.zeros((self.cores, 0), F16), 0)
            return
        if "cores_per_head" in data:  # attention scores: [cores, heads per core, slice]
            chunk = -(-(self.position + 1) // data["cores_per_head"])
            values = np.full((self.cores, data["heads_per_core"], chunk), np.nan, F16)
            self.buffers[number] = _Buffer(data, values, chunk)
        elif "value" in data:
            count = -(-size // 2)
            length = data["n"] * (self.position + 1 if data["per_ctx"] else 1)
            values = np.full((self.cores, count), np.nan, F16)
            self.buffers[number] = _Buffer(data, values, count, length)

    def _load(self, buffer: _Buffer, data: dict, cores, key, where: str) -> None:
        """Piece `piece` of `pieces` of each core's part of a value from the link."""
        source = self._linked(data["src"], key, where)
        per_piece = -(-buffer.count // data["pieces"])
        first = data["piece"] * per_piece
        entries = np.arange(first, min(first + per_piece, buffer.count))
        for core in cores:
            elements = buffer.elements(core)[entries]
            inside = elements < len(source.values)
            values = self._receive(source, elements[inside], "sram", data["src"], where)
            buffer.values[core, entries[inside]] = values
            buffer.values[core, entries[~inside]] = 0

    def _gather(self, buffer: _Buffer, length: int, where: str, cores=None) -> np.ndarray:
        """The value a buffer holds, from its cores' parts (cores holding the same element
        must agree)."""
        cores = range(self.cores) if cores is None else cores
        indices = [buffer.elements(core) for core in cores]
        values = np.zeros(length, F16)
        seen = np.zeros(length, bool)
        for core, elements in zip(cores, indices):
            inside = elements < length
            part = buffer.values[core][inside]
            at = elements[inside]
            clash = seen[at] & (values[at] != part) & ~(np.isnan(values[at]) & np.isnan(part))
            if clash.any():
                raise HpimError(
                    f"{where}: cores disagree on element {int(at[clash][0])} of "
                    f"{buffer.data.get('value')}"
                )
            values[at], seen[at] = part, True
        if not seen.all():
            missing = int(np.argmin(seen))
            raise HpimError(
                f"{where}: no core holds element {missing} of {buffer.data.get('value')}"
            )
        return values

    def _scatter(self, buffer: _Buffer, values: np.ndarray, cores) -> None:
        """Each core's part of `values` into the buffer (0 past the value's end)."""
        for core in cores:
            elements = buffer.elements(core)
            inside = elements < len(values)
            buffer.values[core] = np.where(inside, values[np.where(inside, elements, 0)], 0)

    def _vcu(self, fn: VcuFn, data, cores, dst, src0, src1, layer, where) -> None:
        """A vector function on each core's part (FP32 from FP16, stored FP16)."""
        source = self._buffer(src0, where)
        target = self._buffer(dst, where)
        if fn == VcuFn.SOFTMAX:
            return self._softmax(data, cores, source, target, where)
        operands = [source] + ([self._buffer(src1, where)] if fn in (VcuFn.ADD, VcuFn.MUL) else [])
        for operand in operands:  # element-wise: every core holds the same elements of each
            if _layout(operand) != _layout(target):
                raise HpimError(
                    f"{where}: buffers {src0} / {src1} and {dst} hold different parts of "
                    "their values"
                )
        rows = list(cores)
        x = source.values[rows].astype(F32)
        if fn == VcuFn.ROPE:
            # Rotate-half pairs may sit on two cores (an even split): the value, gathered.
            value = self._gather(source, source.length, where, cores).astype(F32)[None, :]
            rotated = kernels.rope(value, self.position, data["heads"], data["theta"])
            self._scatter(target, rotated[0].astype(F16), cores)
            return
        if fn in _BINARY:
            z = operands[1].values[rows].astype(F32)
            result = _BINARY[fn](x, z)
        elif fn in _UNARY:
            result = _UNARY[fn](x)
        elif fn in (VcuFn.LAYERNORM, VcuFn.RMSNORM):
            result = self._norm(fn, data, cores, source, x, layer, where)
        else:
            raise HpimError(f"{where}: functional execution does not support vcu {fn.name.lower()}")
        target.values[rows] = result.astype(F16)

    def _parameter(self, name: str, layer: int, buffer: _Buffer, cores) -> np.ndarray:
        """A norm parameter sliced as the buffer's value is, per core (0 past its end)."""
        weight = self._weight(name, layer, 2).astype(F32)
        parts = []
        for core in cores:
            elements = buffer.elements(core)
            inside = elements < len(weight)
            parts.append(np.where(inside, weight[np.where(inside, elements, 0)], 0))
        return np.stack(parts)

    def _norm(self, fn, data, cores, source, x, layer, where) -> np.ndarray:
        """LayerNorm / RMSNorm of each core's part with the range's gathered statistics."""
        stats = self.gathered.get((cores.start, cores.stop))
        if stats is None or stats[0] != "moments":
            raise HpimError(f"{where} normalizes without the all-gathered statistics")
        _, partial, n = stats
        total = partial.sum(axis=0, dtype=F32)
        gamma = self._parameter(data["w"], layer, source, cores)
        beta = self._parameter(data["b"], layer, source, cores) if "b" in data else None
        return _normalize(fn, x, total, n, data["eps"], gamma, beta)

    def _allgather(self, data, cores, src0, where) -> None:
        """Each core's partial statistics of its part of the value, gathered by all."""
        source = self._buffer(src0, where)
        rows = list(cores)
        if data.get("stat") == "moments":
            x = source.values[rows].astype(F32)
            valid = np.stack([source.elements(core) < source.length for core in rows])
            x = np.where(valid, x, 0)
            partial = np.stack([x.sum(axis=1), (x * x).sum(axis=1)], axis=1)
            self.gathered[(cores.start, cores.stop)] = ("moments", partial, source.length)
        elif data.get("stat") == "softmax":
            scores = np.stack([self._valid_scores(source, core, data["phase"]) for core in rows])
            peak = scores.max(axis=1)
            safe = np.where(np.isfinite(peak), peak, 0)
            sums = np.exp(scores - safe[:, None]).sum(axis=1, dtype=F32)
            self.gathered[(cores.start, cores.stop)] = ("softmax", np.stack([safe, sums], 1), 0)
        else:
            raise HpimError(f"{where}: an all-gather without `data` saying what it gathers")

    def _positions(self, core: int, cores_per_head: int) -> np.ndarray:
        """The context positions of a core's slice of its head's context."""
        context = self.position + 1
        chunk = -(-context // cores_per_head)
        first = (core % cores_per_head) * chunk
        return np.arange(first, min(first + chunk, context))

    def _valid_scores(self, buffer: _Buffer, core: int, phase: int) -> np.ndarray:
        """A core's scores of one head (its phase), -inf where its slice has no position."""
        positions = self._positions(core, buffer.data["cores_per_head"])
        row = buffer.values[core, phase].astype(F32)
        return np.where(np.arange(buffer.count) < len(positions), row, -np.inf)

    def _softmax(self, data, cores, source, target, where) -> None:
        if "heads" in data:  # scores computed in HBM-PIM, split evenly over the cores
            heads = data["heads"]
            context = self.position + 1
            scores = self._gather(source, heads * context, where, cores).astype(F32)
            probs = kernels.softmax(scores.reshape(heads, context)).reshape(-1)
            self._scatter(target, probs.astype(F16), cores)
            return
        phase = data["phase"]
        split = source.data["cores_per_head"]
        for core in cores:
            scores = self._valid_scores(source, core, phase)
            if split > 1:
                group = self._group_stats(core, split, where)
                peak = group[:, 0].max()
                total = (group[:, 1] * np.exp(group[:, 0] - peak)).sum(dtype=F32)
            else:
                peak = scores.max()
                total = np.exp(scores - peak).sum(dtype=F32)
            target.values[core, phase] = (np.exp(scores - peak) / total).astype(F16)

    def _group_stats(self, core: int, split: int, where: str) -> np.ndarray:
        """The max and exp-sum each core of `core`'s head gathered (`[split, 2]`)."""
        first = core - core % split
        stats = self.gathered.get((first, first + split))
        if stats is None or stats[0] != "softmax":
            raise HpimError(f"{where}: core {core}'s head has no gathered max and sum")
        return stats[1]

    def _macro_write(self, dst, src0, cores, layer, where) -> None:
        """The step's K column or V row into the resident cache: each core its heads."""
        layout = self.cache_layout.get(dst)
        if layout is None:
            raise HpimError(f"{where} writes PIM buffer {dst}, which holds no cache")
        source = self._buffer(src0, where)
        width = int(self.model["kv_heads"]) * int(self.model["head_dim"])
        cache = self._cache("sram", layout["cache"], layer, width)
        for core in cores:
            elements = source.elements(core)
            inside = elements < width  # a last core's heads past the last are padding
            cache[self.position, elements[inside]] = source.values[core][inside]

    def _attention(self, op, data, cores, dst, src0, src1, layer, key, where) -> None:
        """q.K^T (scores of the core's head `phase` over its slice of the context) or s.V
        (that head's output, a partial sum over the slice when a head spans cores)."""
        source, target = self._buffer(src0, where), self._buffer(dst, where)
        scores_buffer = source if data["kind"] == "values" else target
        split = scores_buffer.data["cores_per_head"]
        head_dim = int(self.model["head_dim"])
        if op == SramOp.MVM:
            layout = self.cache_layout.get(src1)
            if layout is None:
                raise HpimError(f"{where} multiplies PIM buffer {src1}, which holds no cache")
            name, side, piece, pieces = layout["cache"], "sram", 0, 1
        else:
            name, side, piece, pieces = data["cache"], "hbm", data["piece"], data["pieces"]
        if (side, name, layer) not in self.caches:
            raise HpimError(f"{where} reads @{name} of layer {layer}, never written")
        cache = self.caches[(side, name, layer)]
        streamed = self.context.get((name, key)) if side == "hbm" else None
        phase = data["phase"]
        for core in cores:
            positions = self._positions(core, split)
            # A streamed piece: every `pieces`-th entry of the core's slice from `piece` on.
            entries = np.arange(piece, len(positions), pieces)
            positions = positions[entries]
            if streamed is not None:  # the positions this piece streams, read out of HBM
                self._receive(streamed, positions, "sram", f"the context of @{name}", where)
            queries = target if data["kind"] == "values" else source
            kv_head = self._query_head(queries, core, phase, head_dim) // data["group"]
            if op == SramOp.MVM:  # the macros of the core hold its key/value heads only
                first = (core * layout["mul"]) // layout["div"]
                if not first <= kv_head < first + layout["heads"]:
                    raise HpimError(
                        f"{where}: core {core} multiplies key/value head {kv_head}, "
                        f"its macros hold heads {first}..{first + layout['heads'] - 1}"
                    )
            kv = cache[positions, kv_head * head_dim : (kv_head + 1) * head_dim]
            if data["kind"] == "scores":
                query = source.values[core, phase * head_dim : (phase + 1) * head_dim]
                scores = _mac(kv, query) * F32(data["scale"])
                target.values[core, phase, entries] = scores.astype(F16)
            else:
                probs = source.values[core, phase, entries]
                part = _mac(kv.T, probs)
                out = slice(phase * head_dim, (phase + 1) * head_dim)
                if piece > 0:  # the pieces of a streamed context add up
                    part += target.values[core, out].astype(F32)
                target.values[core, out] = part.astype(F16)

    def _query_head(self, buffer: _Buffer, core: int, phase: int, head_dim: int) -> int:
        """The query head a core runs in phase `phase` (its first head, plus the phase)."""
        return int(buffer.elements(core)[0]) // head_dim + phase


def _normalize(fn, x, moments, n: int, eps: float, gamma, beta) -> np.ndarray:
    """LayerNorm / RMSNorm of `x` from its rows' gathered `moments` (`[..., 2]`: the sum and
    the sum of squares over `n` features), in FP32."""
    squares = moments[..., 1:2] / F32(n)
    if fn == VcuFn.RMSNORM:
        return x / np.sqrt(squares + F32(eps)) * gamma
    mean = moments[..., 0:1] / F32(n)
    return (x - mean) / np.sqrt(squares - mean * mean + F32(eps)) * gamma + beta


def _layout(buffer: _Buffer) -> tuple[int, ...]:
    """Which elements each core holds (equal layouts: the same elements on every core)."""
    unit = buffer.count if buffer.data["unit"] < 0 else buffer.data["unit"]
    return buffer.data["mul"], buffer.data["div"], unit, buffer.count, buffer.length


def _piece_positions(context: int, split: int, piece: int, pieces: int) -> np.ndarray:
    """Positions of piece `piece` of `pieces` of a context of `context` tokens cut into
    `split` slices (one per core of a head): of each slice, every `pieces`-th position from
    its `piece`-th on, the keys the cores' streamed piece `piece` multiplies."""
    chunk = -(-context // split)
    parts = [
        np.arange(first + piece, min(first + chunk, context), pieces)
        for first in range(0, context, chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def run_tokens(
    module: ModuleOp, weights: Weights, tokens: Sequence[int], hw: Hardware | None = None
) -> np.ndarray:
    """Logits of every position (`[len(tokens), vocab]`, FP16): each token stepped through
    the compiled decode step in turn, teacher-forced (row i: the prediction after
    tokens[:i + 1])."""
    machine = IsaMachine(module, weights, hw)
    return np.stack([machine.step(int(token)) for token in tokens])
