"""The SRAM-PIM instruction stream as the simulator consumes it.

One numpy structured array, one record per instruction, holding the instructions of every
core. A record names a half-open core range `[core_lo, core_hi)` (`0, -1`: every core of the
machine) and is executed by each core of the range, in that core's program order (the order
of the records that include it). So one record serves the common case where all cores do the
same work on their own data (SPMD: every core runs softmax over its head's scores), and a
compiled decode step stays a few records per layer rather than one per core; a collective
(`allgather`, `reduce`) uses the range as its set of participants.

Sizes are symbolic in the context length: a decode step is compiled once and simulated at
every context length `ctx`. Size i of a record is `ceil((a_i * ctx + b_i) / d_i)` (fields
`a0 b0 d0`, `a1 b1 d1`, `a2 b2 d2`): affine in `ctx` when `d_i = 1`, and a ceiling division
by a constant (MLIR's `ceildiv`) when a head's context is split over `d_i` cores. The engine
binds them (`hpim_ir.sim.sram.bind`); `Affine` builds them. What each size means is the
op's `FORMS` entry.

Data lives in buffers, named per core by small integers: activation-memory buffers and PIM
buffers (matrices resident in the PIM macros), created by `alloc` and released by `free`.
An instruction reads its `src0`/`src1` buffers and writes its `dst` buffer (`-1`: none);
these are its only dependencies (`docs/sram-engine.md`). Tokens (`signal`/`wait`) are shared
with the HBM-PIM stream (`hpim_ir.sim.hbm.program`).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class SramOp(IntEnum):
    """Instruction kinds. `cores=A:B` is the core range; sizes are in `FORMS` order."""

    LOAD = 0
    """`sram.load dst=B bytes=E`: `E` bytes arrive from the HBM-PIM subsystem over the link
    into activation-memory buffer B (the transfer unit; the link is shared by all cores)."""
    STORE = 1
    """`sram.store src0=B bytes=E`: `E` bytes of buffer B leave over the link to HBM-PIM."""
    MACRO_WRITE = 2
    """`sram.macro_write dst=M src0=B rows=R cols=C`: write the FP16 R x C matrix in
    activation-memory buffer B into PIM buffer M (e.g. K^T or V tiles of resident KV)."""
    MVM = 3
    """`sram.mvm dst=Y src0=X src1=M rows=R cols=C`: Y = X . W on the PIM unit, X a vector of
    R FP16 values, W the R x C matrix resident in PIM buffer M (q . K^T, s . V)."""
    STREAM_MVM = 4
    """`sram.stream_mvm dst=Y src0=X rows=R cols=C`: Y = X . W with W (R x C FP16) streamed
    from HBM over the link straight into the macros, in chunks of half the macros: one half
    computes while the other is written. The KV-in-HBM form of q . K^T and s . V; W is kept
    in HBM in the layout the macros take (K^T tiles, V rows)."""
    GEMM = 5
    """`sram.gemm dst=C src0=A src1=B m=M n=N k=K`: C (M x N) = A (M x K) . B (K x N) on the
    TCU, B loaded into the systolic array fold by fold (prefill projections)."""
    VCU = 6
    """`sram.vcu.<fn> dst=Y src0=X [src1=Z] n=N`: vector function `kind` (a `VcuFn`) over N
    elements of X (and Z, for binary functions and parameters such as LayerNorm's gamma)."""
    TRANSPOSE = 7
    """`sram.transpose dst=Y src0=X rows=R cols=C`: Y (C x R) = X^T (the fresh K row(s) into
    K^T columns)."""
    ALLGATHER = 8
    """`sram.allgather dst=Y src0=X bytes=E`: every core of the range contributes E bytes of X
    and receives all contributions in Y (ring algorithm over the NoC). Every core of the
    range must reach its matching instance (same range, same occurrence)."""
    REDUCE = 9
    """`sram.reduce dst=Y src0=X bytes=E`: the FP16 sum of every core's E bytes of X arrives
    in Y on the first core of the range (binary tree over the NoC; each receiver adds)."""
    SCALAR = 10
    """`sram.scalar [dst=Y] [src0=X] [src1=Z] n=N`: N scalar operations on the SCU
    (address arithmetic, scale factors, control)."""
    SIGNAL = 11
    """`sram.signal tok=T`: raise token T once every earlier instruction of every core of the
    range has completed; later instructions do not wait for it."""
    WAIT = 12
    """`sram.wait tok=T`: later instructions of each core of the range issue only once token
    T is raised (by the HBM-PIM stream, or by an SRAM-PIM signal)."""
    BARRIER = 13
    """`sram.barrier`: later instructions issue only once every earlier one of the core has
    completed."""
    ALLOC = 14
    """`sram.alloc dst=B space=am bytes=E` or `sram.alloc dst=M space=pim rows=R cols=C`:
    create buffer B in activation memory, or PIM buffer M for an R x C FP16 matrix; the
    engine checks the live buffers of each core against its activation memory and macros.
    A declaration of the compiler's static allocation: it takes no issue slot."""
    FREE = 15
    """`sram.free dst=B`: release buffer B (activation memory or PIM); a declaration, like
    `alloc`. Reusing the space of a freed buffer before its readers finish is the
    compiler's responsibility; reusing its number is ordered by the dependency rule."""


class VcuFn(IntEnum):
    """The `kind` of a `sram.vcu` instruction: the function applied to N elements. Its cost
    is the sum of its passes (`hpim_ir.sim.sram.timing.VCU_PASSES`)."""

    EXP = 0
    """exp(x)."""
    MAX = 1
    """max over the vector."""
    SUM = 2
    """sum over the vector."""
    SOFTMAX = 3
    """exp(x - max) / sum: max, exp (with the subtraction and the running sum), reciprocal
    of the sum, scale."""
    LAYERNORM = 4
    """(x - mean) * rsqrt(var + eps) * gamma + beta (gamma, beta in src1)."""
    RMSNORM = 5
    """x * rsqrt(mean(x^2) + eps) * gamma (gamma in src1)."""
    GELU = 6
    """GELU, tanh form."""
    RELU = 7
    """max(x, 0)."""
    SILU = 8
    """x * sigmoid(x)."""
    MUL = 9
    """x * z, element-wise."""
    ADD = 10
    """x + z, element-wise (residual add)."""
    ROPE = 11
    """rotary embedding: x * cos + rotate_half(x) * sin (the cos/sin table in src1)."""


class Space(IntEnum):
    """The `kind` of a `sram.alloc`: where the buffer lives."""

    AM = 0
    """Activation memory; size `bytes`."""
    PIM = 1
    """The PIM macros; size `rows x cols` FP16."""


# Operand roles: "am" / "pim" a buffer of that space is required ("buffer": of either, the
# one alloc creates or free releases); a trailing "?" makes it optional; None: must be -1.
@dataclass(frozen=True)
class Form:
    """The fields an op uses: its sizes (names, in order) and its buffer operands."""

    sizes: tuple[str, ...]
    dst: str | None = None
    src0: str | None = None
    src1: str | None = None


FORMS: dict[SramOp, Form] = {
    SramOp.LOAD: Form(("bytes",), dst="am"),
    SramOp.STORE: Form(("bytes",), src0="am"),
    SramOp.MACRO_WRITE: Form(("rows", "cols"), dst="pim", src0="am"),
    SramOp.MVM: Form(("rows", "cols"), dst="am", src0="am", src1="pim"),
    SramOp.STREAM_MVM: Form(("rows", "cols"), dst="am", src0="am"),
    SramOp.GEMM: Form(("m", "n", "k"), dst="am", src0="am", src1="am"),
    SramOp.VCU: Form(("n",), dst="am", src0="am", src1="am?"),
    SramOp.TRANSPOSE: Form(("rows", "cols"), dst="am", src0="am"),
    SramOp.ALLGATHER: Form(("bytes",), dst="am", src0="am"),
    SramOp.REDUCE: Form(("bytes",), dst="am?", src0="am"),
    SramOp.SCALAR: Form(("n",), dst="am?", src0="am?", src1="am?"),
    SramOp.SIGNAL: Form(()),
    SramOp.WAIT: Form(()),
    SramOp.BARRIER: Form(()),
    # alloc's sizes depend on its space: bytes (am) or rows, cols (pim)
    SramOp.ALLOC: Form(("bytes",), dst="buffer"),
    SramOp.FREE: Form((), dst="buffer"),
}

EMPTY_ALLOWED = frozenset({SramOp.STREAM_MVM})
"""Instructions whose sizes may be 0 (every other size is at least 1 at every context
length): an empty one does nothing and takes no time. A streamed product of one piece of a
KV cache's context (`convert-pim-to-isa`) is empty at contexts shorter than its pieces."""


def smallest_size(op: SramOp) -> int:
    """The smallest value a size of `op` may take at any context length."""
    return 0 if op in EMPTY_ALLOWED else 1


PIM_ALLOC_SIZES = ("rows", "cols")
"""The sizes of `sram.alloc space=pim`."""

COLLECTIVES = (SramOp.ALLGATHER, SramOp.REDUCE)

RECORD_DTYPE = np.dtype(
    [
        ("op", np.uint8),
        ("kind", np.uint8),  # VcuFn of vcu, Space of alloc, else 0
        ("core_lo", np.int16),
        ("core_hi", np.int16),  # half-open; 0, -1: every core
        ("dst", np.int16),  # buffer written, -1: none (alloc / free: the buffer)
        ("src0", np.int16),  # buffers read, -1: none
        ("src1", np.int16),
        ("tok", np.int32),  # signal / wait: the token; else -1
        ("a0", np.int32),  # size i = ceil((a_i * ctx + b_i) / d_i); unused sizes 0, 0, 1
        ("b0", np.int32),
        ("d0", np.int32),
        ("a1", np.int32),
        ("b1", np.int32),
        ("d1", np.int32),
        ("a2", np.int32),
        ("b2", np.int32),
        ("d2", np.int32),
        ("line", np.int32),  # source line (1-based) for messages; 0 if none
    ]
)

MAX_SIZES = 3


@dataclass(frozen=True)
class Affine:
    """A size symbolic in the context length: `ceil((a * ctx + b) / d)`.

    Build with `CTX` and integers: `CTX * 256` (a K cache of 256 bytes per token),
    `CTX + 1`, `(CTX + 1).ceildiv(4)` (a quarter of the context, rounded up)."""

    a: int = 0
    b: int = 0
    d: int = 1

    @staticmethod
    def of(value: "int | Affine") -> "Affine":
        return value if isinstance(value, Affine) else Affine(0, int(value), 1)

    def __call__(self, ctx: int) -> int:
        return -(-(self.a * ctx + self.b) // self.d)

    def __add__(self, other: int) -> "Affine":
        # ceil(y / d) + c == ceil((y + c * d) / d) for integers
        return Affine(self.a, self.b + int(other) * self.d, self.d)

    __radd__ = __add__

    def __sub__(self, other: int) -> "Affine":
        return self + -int(other)

    def __mul__(self, factor: int) -> "Affine":
        if self.d != 1:
            raise TypeError("a ceil-divided size cannot be scaled exactly; scale it first")
        return Affine(self.a * int(factor), self.b * int(factor), 1)

    __rmul__ = __mul__

    def piece(self, index: int, pieces: int) -> "Affine":
        """Piece `index` of `pieces` of this size, exactly: every `pieces`-th unit from unit
        `index` on, ceil((size - index) / pieces) = ceil((a * ctx + b - index * d) / (d *
        pieces)) for integers. Where the size is at least 0 the pieces add up to it (each at
        least 0); a piece is 0 where the size is at most `index`."""
        if not 0 <= index < pieces:
            raise ValueError(f"piece {index} of {pieces}: a piece is 0..{pieces - 1}")
        return Affine(self.a, self.b - index * self.d, self.d * pieces)

    def ceildiv(self, divisor: int) -> "Affine":
        # ceil(ceil(y / d) / k) == ceil(y / (d * k)) for integers and positive d, k
        if divisor < 1:
            raise ValueError(f"ceildiv by {divisor}: the divisor must be positive")
        return Affine(self.a, self.b, self.d * int(divisor))

    def __str__(self) -> str:
        """`256*ctx`, `ctx + 1`, `ceildiv(ctx - 1, 4)`, `64`: exact, one form per (a, b, d);
        a divided constant keeps its `0*ctx` (`ceildiv(0*ctx + 5, 2)`)."""
        if self.a == 0 and self.d == 1:
            return str(self.b)
        text = "ctx" if self.a == 1 else f"{self.a}*ctx"
        if self.b:
            text += f" {'+-'[self.b < 0]} {abs(self.b)}"
        return f"ceildiv({text}, {self.d})" if self.d != 1 else text


CTX = Affine(1, 0, 1)
"""The context length, as a size."""


@dataclass(frozen=True)
class SramProgram:
    """An SRAM-PIM instruction stream: `records` is a 1-D array of `RECORD_DTYPE`."""

    records: np.ndarray

    def __post_init__(self) -> None:
        if self.records.dtype != RECORD_DTYPE or self.records.ndim != 1:
            raise TypeError("SramProgram.records must be a 1-D array of RECORD_DTYPE")

    def __len__(self) -> int:
        return len(self.records)


Cores = int | tuple[int, int] | range | None


class ProgramBuilder:
    """Builds an `SramProgram` record by record (tests, examples, hand-written programs;
    the `sram_isa` dialect and the assembly reader produce the same records).

    `cores` is one core, a half-open `(lo, hi)` pair or `range`, or None for every core."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(
        self,
        op: SramOp,
        cores: Cores = None,
        *,
        kind: int = 0,
        dst: int = -1,
        src0: int = -1,
        src1: int = -1,
        tok: int = -1,
        sizes: Iterable["int | Affine"] = (),
        line: int = 0,
    ) -> "ProgramBuilder":
        if cores is None:
            lo, hi = 0, -1
        elif isinstance(cores, int):
            lo, hi = cores, cores + 1
        elif isinstance(cores, range):
            lo, hi = cores.start, cores.stop
        else:
            lo, hi = cores
        affine = [Affine.of(size) for size in sizes]
        if len(affine) > MAX_SIZES:
            raise ValueError(f"at most {MAX_SIZES} sizes, got {len(affine)}")
        affine += [Affine()] * (MAX_SIZES - len(affine))
        flat = [field for size in affine for field in (size.a, size.b, size.d)]
        self.rows.append((int(op), int(kind), lo, hi, dst, src0, src1, tok, *flat, line))
        return self

    def build(self) -> SramProgram:
        return SramProgram(np.array(self.rows, dtype=RECORD_DTYPE))
