"""Closed-form cycle counts of the SRAM-PIM units, one function per rule.

Every function takes numpy integer arrays of sizes (one entry per instruction) and a
hardware description and returns the cycles each instruction occupies its unit; the engine
binds a whole program with one call per kind. The rules and their derivations are in
`docs/sram-engine.md`; the tests check each against hand-derived figures.
"""

from enum import IntEnum
from fractions import Fraction

import numpy as np

from hpim_ir.hardware.sram import LinkConfig, PimConfig, SramConfig, TcuConfig, VcuConfig
from hpim_ir.sim.sram.program import VcuFn


class Unit(IntEnum):
    """The units of a core that run concurrently; each runs one instruction at a time."""

    SCU = 0
    TCU = 1
    VCU = 2
    PIM = 3
    TRANSPOSE = 4
    TRANSFER = 5
    """The core's port to the link and the NoC (loads, stores, streams, collectives)."""


def ceil_div(numerator: np.ndarray | int, denominator: np.ndarray | int) -> np.ndarray:
    """Integer ceiling division, exact for int64 arrays."""
    return -(-np.asarray(numerator, dtype=np.int64) // denominator)


def tcu_cycles(m: np.ndarray, n: np.ndarray, k: np.ndarray, tcu: TcuConfig) -> np.ndarray:
    """A weight-stationary M x N x K GEMM on an R x C array with double-buffered weights.

    B is cut into F = ceil(K / R) * ceil(N / C) folds of at most R x C. The first fold's
    weights take R cycles to shift in; each fold then streams the M rows of A, one per
    cycle, while the next fold's weights shift into the shadow registers (R cycles), so a
    fold takes max(M, R); the last rows drain through R + C - 2 more PEs:
    R + F * max(M, R) + R + C - 2. (One fold with M >= R gives 2R + C + M - 2, SCALE-Sim's
    weight-stationary count.)"""
    rows, cols = tcu.rows, tcu.cols
    folds = ceil_div(k, rows) * ceil_div(n, cols)
    return rows + folds * np.maximum(m, rows) + rows + cols - 2


VCU_PASSES: dict[VcuFn, tuple[tuple[str, bool], ...]] = {
    VcuFn.EXP: (("exp", True),),
    VcuFn.MAX: (("reduce", True),),
    VcuFn.SUM: (("reduce", True),),
    # max; exp(x - max) with the running sum on the exp pipeline's output; 1 / sum; scale
    VcuFn.SOFTMAX: (("reduce", True), ("exp", True), ("rsqrt", False), ("elementwise", True)),
    # mean; variance of x - mean (subtract, square fused); rsqrt; two FMA passes:
    # x * rstd - mean * rstd, then * gamma + beta
    VcuFn.LAYERNORM: (
        ("reduce", True),
        ("reduce", True),
        ("rsqrt", False),
        ("elementwise", True),
        ("elementwise", True),
    ),
    # sum of squares (square fused); rsqrt; x * rstd; * gamma
    VcuFn.RMSNORM: (
        ("reduce", True),
        ("rsqrt", False),
        ("elementwise", True),
        ("elementwise", True),
    ),
    VcuFn.GELU: (("gelu", True),),
    VcuFn.RELU: (("elementwise", True),),
    VcuFn.SILU: (("silu", True),),
    VcuFn.MUL: (("elementwise", True),),
    VcuFn.ADD: (("elementwise", True),),
    # x * cos, then FMA with rotate_half(x) * sin (the rotation is addressing)
    VcuFn.ROPE: (("elementwise", True), ("elementwise", True)),
}
"""Each VCU function as passes over the vector: (throughput field, over all N elements
(True) or over one element (False)). A pass costs latency + ceil(elements / throughput)."""


def vcu_cycles(fn: np.ndarray, n: np.ndarray, vcu: VcuConfig) -> np.ndarray:
    """Cycles of VCU function `fn` (a `VcuFn` per entry) over `n` elements: the sum of its
    passes, each `latency_cycles + ceil(elements / <function>_per_cycle)`."""
    cycles = np.zeros(len(n), dtype=np.int64)
    for function, passes in VCU_PASSES.items():
        mine = fn == function
        if not mine.any():
            continue
        for name, whole in passes:
            elements = n[mine] if whole else 1
            rate = getattr(vcu, f"{name}_per_cycle")
            cycles[mine] += vcu.latency_cycles + ceil_div(elements, rate)
    return cycles


def pim_slice_rows(rows: np.ndarray, cols: np.ndarray, pim: PimConfig) -> np.ndarray:
    """Slice-rows of an R x C matrix in the macros: its columns are cut into slices as wide
    as a macro's multipliers (L), the last one padded, and a slice-row (one row of one
    slice, L values) is what a macro multiplies in one cycle: R * ceil(C / L)."""
    return rows * ceil_div(cols, pim.multipliers_per_macro)


def pim_bytes(rows: np.ndarray, cols: np.ndarray, pim: PimConfig) -> np.ndarray:
    """Bytes an R x C FP16 matrix occupies in the macros (slices padded to L lanes)."""
    return pim_slice_rows(rows, cols, pim) * pim.multipliers_per_macro * 2


def mvm_cycles(rows: np.ndarray, cols: np.ndarray, pim: PimConfig) -> np.ndarray:
    """X . W for a resident R x C matrix W: its slice-rows are dealt evenly over the P
    macros, which run in lock-step, one slice-row per cycle each, and the partial sums meet
    in the adder tree: mvm_latency + ceil(R * ceil(C / L) / P)."""
    return pim.mvm_latency_cycles + ceil_div(pim_slice_rows(rows, cols, pim), pim.macros)


def macro_write_cycles(rows: np.ndarray, cols: np.ndarray, pim: PimConfig) -> np.ndarray:
    """Writing an R x C matrix into the macros: whole slice-rows (a partly filled slice
    costs its full width) through the write port: ceil(R * ceil(C / L) * 2L / write_bytes)."""
    return ceil_div(pim_bytes(rows, cols, pim), pim.write_bytes_per_cycle)


def stream_chunks(rows: int, cols: int, pim: PimConfig) -> list[int]:
    """The chunks (in slice-rows) of a streamed MVM: as many slice-rows as half the macros
    hold, the last chunk the remainder. A unit of one macro streams through that macro."""
    total = int(pim_slice_rows(np.int64(rows), np.int64(cols), pim))
    half = max(pim.macros // 2, 1)
    capacity = half * pim.macro_rows * pim.macro_cols // pim.multipliers_per_macro
    full, last = divmod(total, capacity)
    return [capacity] * full + ([last] if last else [])


def stream_mvm_offset(
    rows: int, cols: int, pim: PimConfig, bytes_per_cycle: Fraction, latency: int
) -> int:
    """Cycles from the start of a streamed MVM's link transfer to its result.

    Chunk j (e_j slice-rows, 2L bytes each) has arrived at A_j = latency +
    ceil(bytes up to and including chunk j / link bytes per cycle). It is written into a
    free half of the macros as it arrives: the write starts once chunk j-1 is written and
    chunk j-2 (the previous occupant of that half) is computed, takes
    w_j = ceil(e_j * 2L / write_bytes), and ends no earlier than A_j. The half then
    computes it in ceil(e_j / (P / 2)) cycles once chunk j-1 is computed. The result
    follows the last chunk after mvm_latency. With one macro there is one buffer, not two.
    An empty product (0 rows or columns) does nothing: 0 cycles."""
    lanes = pim.multipliers_per_macro
    half = max(pim.macros // 2, 1)
    buffers = 2 if pim.macros >= 2 else 1
    written: list[int] = []
    computed: list[int] = []
    arrived_bytes = 0
    for chunk in stream_chunks(rows, cols, pim):
        arrived_bytes += chunk * 2 * lanes
        arrival = latency + _ceil_fraction(arrived_bytes, bytes_per_cycle)
        begin = max(
            written[-1] if written else latency,
            computed[-buffers] if len(computed) >= buffers else 0,
        )
        write = -(-chunk * 2 * lanes // pim.write_bytes_per_cycle)
        written.append(max(begin + write, arrival))
        compute = -(-chunk // half)
        computed.append(max(written[-1], computed[-1] if computed else 0) + compute)
    return computed[-1] + pim.mvm_latency_cycles if computed else 0


def _ceil_fraction(amount: int, rate: Fraction) -> int:
    return -(-amount * rate.denominator // rate.numerator)


def link_cycles(nbytes: np.ndarray, link: LinkConfig, clock_mhz: float) -> np.ndarray:
    """Cycles the link is occupied moving `nbytes`: ceil(bytes / bytes per cycle), exact."""
    rate = link.bytes_per_cycle(clock_mhz)
    return ceil_div(np.asarray(nbytes, dtype=np.int64) * rate.denominator, rate.numerator)


def transpose_cycles(rows: np.ndarray, cols: np.ndarray, sram: SramConfig) -> np.ndarray:
    """R x C -> C x R: latency + ceil(R * C / elements_per_cycle)."""
    unit = sram.transpose
    return unit.latency_cycles + ceil_div(rows * cols, unit.elements_per_cycle)


def noc_cycles(nbytes: np.ndarray | int, sram: SramConfig) -> np.ndarray:
    """Cycles one transfer holds each link of its path: ceil(bytes / link bytes per cycle)."""
    return ceil_div(nbytes, sram.noc.link_bytes_per_cycle)


def reduce_combine_cycles(nbytes: np.ndarray | int, vcu: VcuConfig) -> np.ndarray:
    """A reduce step's receiver adds the FP16 contribution to its own: one element-wise
    pass over ceil(bytes / 2) elements."""
    return vcu.latency_cycles + ceil_div(ceil_div(nbytes, 2), vcu.elementwise_per_cycle)
