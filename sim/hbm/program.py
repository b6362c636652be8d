"""The HBM-PIM instruction stream as the simulator consumes it.

One numpy structured array, one record per instruction, in program order. Raw commands
(`wr_gb`, `mac_ab`, `act_ab`, `pre_ab`, `rd_out`, `barrier`; the normal-mode `act`, `pre`,
`rd`, `wr`, `rda`, `wra`) and macro-instructions (`gemv`, `load_gb`, `readout`, `read`,
`write`) share the record layout, so a 66k-line micro-benchmark and a compiled model are the
same kind of object. A macro-instruction stands for exactly the raw sequence documented on
its `HbmOp` member; the engines never need to materialize that sequence.

Channel fields are a half-open range `[ch_lo, ch_hi)`: a raw command on channel C has
`ch_lo = C, ch_hi = C + 1`; `ch_lo = 0, ch_hi = -1` means every channel of the machine
(`hbm.barrier` with no channel); signal and wait carry `-1, -1`. Both the
assembly reader (`hpim_ir.asm`) and the `hbm_isa` dialect produce this array.

Context-dependent sizes: a decode step is compiled once for every context length `ctx`. The
count of a `gemv`, `read`, `write` (rows) or `readout` (bursts) is `n + max(0, ceil((per_ctx *
ctx + ctx_off) / ctx_div))`; `bind_context` makes the counts concrete for one `ctx`. The offset
`ctx_off` lets a count be one exact share of another (`split_count`): the pieces a KV cache's
context streams in read, together, exactly the rows the whole would.

Sections: a program is a sequence of `Section`s (the prologue, the decoder layers, ...); a
section may be repeated, iteration `l` moving every row by `l * row_stride`. `unroll` and
`expand_sections` turn a section into the plain records it stands for.
"""

import math
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
from hpim_ir.sim.sram.program import Affine

from hpim_ir.errors import HpimError


class HbmOp(IntEnum):
    """Instruction kinds. Macro semantics are given as the raw sequence they stand for."""

    WR_GB = 0
    """`hbm.wr_gb ch=C col=K`: 32 B of the input vector into slot K of C's global buffer."""
    MAC_AB = 1
    """`hbm.mac_ab ch=C row=R col=K`: every bank of C MACs column K of row R with slot K."""
    ACT_AB = 2
    """`hbm.act_ab ch=C row=R`: activate row R in all banks of C."""
    PRE_AB = 3
    """`hbm.pre_ab ch=C`: precharge all banks of C."""
    RD_OUT = 4
    """`hbm.rd_out ch=C`: read 32 B of accumulated results out of C's bank PUs."""
    BARRIER = 5
    """`hbm.barrier [ch=C]`: later commands of the channel(s) wait until earlier ones complete."""
    SIGNAL = 6
    """`hbm.signal tok=T`: raise token T once every earlier command has completed."""
    WAIT = 7
    """`hbm.wait tok=T`: later commands wait until token T is raised (by the other stream)."""
    GEMV = 8
    """`hbm.gemv ch=C row=R rows=N cols=K`: for r in R..R+N-1, for k in 0..K-1: mac_ab row=r col=k."""
    LOAD_GB = 9
    """`hbm.load_gb ch=C cols=K`: wr_gb col=k for k in 0..K-1."""
    READOUT = 10
    """`hbm.readout ch=C n=N`: N x rd_out."""
    ACT = 11
    """`hbm.act ch=C bank=B row=R`: activate row R in bank B of C (normal mode)."""
    PRE = 12
    """`hbm.pre ch=C bank=B`: precharge bank B of C."""
    RD = 13
    """`hbm.rd ch=C bank=B row=R col=K`: read 32 B (column K of row R of bank B) to the host."""
    WR = 14
    """`hbm.wr ch=C bank=B row=R col=K`: write 32 B from the host into column K of row R of B."""
    RDA = 15
    """`hbm.rda ch=C bank=B row=R col=K`: `rd` with auto-precharge (the bank closes itself)."""
    WRA = 16
    """`hbm.wra ch=C bank=B row=R col=K`: `wr` with auto-precharge."""
    READ = 17
    """`hbm.read ch=C row=R rows=N cols=K`: read columns 0..K-1 of rows R..R+N-1 of every bank
    of C, bank-group and pseudo-channel interleaved: the raw sequence of
    `hpim_ir.sim.hbm.normal.stream_passes` (rd / rda and the act that open banks ahead)."""
    WRITE = 18
    """`hbm.write ch=C row=R rows=N cols=K`: the same as `read` with wr / wra."""


COUNTED = (HbmOp.GEMV, HbmOp.READ, HbmOp.WRITE, HbmOp.READOUT)
"""Instructions whose count (column `n`) may depend on the context length."""

RECORD_DTYPE = np.dtype(
    [
        ("op", np.uint8),
        ("ch_lo", np.int32),
        ("ch_hi", np.int32),
        ("row", np.int32),  # -1 where the instruction has no row
        ("col", np.int32),  # column / buffer slot; gemv, load_gb, read, write: columns; -1 if none
        ("n", np.int32),  # gemv, read, write: rows; readout: bursts; signal/wait: token; else 1
        ("line", np.int32),  # source line (1-based) for messages; 0 if none
        ("bank", np.int32),  # act, pre, rd, wr, rda, wra: bank of the channel; -1 if none
        # counted instructions: n + max(0, ceil((per_ctx * ctx + ctx_off) / ctx_div))
        ("per_ctx", np.int32),
        ("ctx_div", np.int32),
        ("ctx_off", np.int32),
    ]
)

DEFAULTS = (-1, 0, 1, 0)
"""The columns after `line` (bank, per_ctx, ctx_div, ctx_off) of an instruction that leaves
them out."""

MAX_COUNT = 2**31 - 2
"""The largest count a bound instruction may have (the record column is int32)."""


@dataclass(frozen=True)
class Section:
    """Records `[start, stop)` of a program, written `.section NAME repeat=N row_stride=S`.

    `name`, `repeat` and `row_stride` are None when not given (a program without directives
    is one section with none of them). The section stands for its records `repeat` times
    (default once), iteration `l` with every row moved on by `l * row_stride` (default 0)."""

    start: int
    stop: int
    name: str | None = None
    repeat: int | None = None
    row_stride: int | None = None

    @property
    def times(self) -> int:
        return 1 if self.repeat is None else self.repeat

    @property
    def stride(self) -> int:
        return 0 if self.row_stride is None else self.row_stride

    @property
    def plain(self) -> bool:
        """No name, repeat or row_stride: what a program without directives is."""
        return self.name is None and self.repeat is None and self.row_stride is None


@dataclass(frozen=True)
class HbmProgram:
    """An HBM-PIM instruction stream: `records` is a 1-D array of `RECORD_DTYPE`, `sections`
    cover it in order (by default one plain section)."""

    records: np.ndarray
    sections: tuple[Section, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.records.dtype != RECORD_DTYPE or self.records.ndim != 1:
            raise TypeError("HbmProgram.records must be a 1-D array of RECORD_DTYPE")
        if not self.sections:
            object.__setattr__(self, "sections", (Section(0, len(self.records)),))
        bounds = [(s.start, s.stop) for s in self.sections]
        starts = [0] + [stop for _, stop in bounds[:-1]]
        if [start for start, _ in bounds] != starts or bounds[-1][1] != len(self.records):
            raise TypeError(f"sections {bounds} do not cover records 0..{len(self.records)}")

    def __len__(self) -> int:
        return len(self.records)

    @staticmethod
    def from_rows(rows: list[tuple[int, ...]]) -> "HbmProgram":
        """Build from (op, ch_lo, ch_hi, row, col, n, line[, bank, per_ctx, ctx_div, ctx_off])
        tuples
        (tests, small programs); left-out trailing columns take their `DEFAULTS`."""
        full = [tuple(row) + DEFAULTS[len(row) - 7 :] for row in rows]
        return HbmProgram(np.array(full, dtype=RECORD_DTYPE))


def has_context(program: HbmProgram) -> bool:
    """Whether some count of the program depends on the context length."""
    return bool((program.records["per_ctx"] != 0).any())


def count_text(n: int, per_ctx: int, ctx_div: int, ctx_off: int, ctx: int | str = "ctx") -> str:
    """A count's formula for messages: `n + ceil(P * ctx / D)`, with an offset `n + max(0,
    ceil((P * ctx + Q) / D))`."""
    if not ctx_off:
        return f"{n} + ceil({per_ctx} * {ctx} / {ctx_div})"
    return f"{n} + max(0, ceil(({per_ctx} * {ctx} {'+-'[ctx_off < 0]} {abs(ctx_off)}) / {ctx_div}))"


def split_count(
    n: int, per_ctx: int, ctx_div: int, ctx_off: int, pieces: int
) -> list[tuple[int, int, int, int]]:
    """The count `n + max(0, ceil((per_ctx * ctx + ctx_off) / ctx_div))` cut into `pieces`
    counts (n, per_ctx, ctx_div, ctx_off) that add up to it at every `ctx >= 0`: piece i takes
    every `pieces`-th unit from unit i on, ceil((count - i) / pieces) of them.

    With C = n * D + P * ctx + Q (D, P, Q: the divisor, per_ctx and offset), the count is
    ceil(C / D) when C > -D, and for integers ceil((ceil(C / D) - i) / k) = ceil((C - i * D) /
    (k * D)); so piece i is `0 + ceil((P * ctx + Q + (n - i) * D) / (k * D))`, reduced by the
    common divisor. The whole must not need its `max(0, ...)` (`ctx_off > -ctx_div`); then no
    piece does either. A count without a context term splits into constants."""
    if per_ctx != 0 and ctx_off <= -ctx_div:
        raise ValueError(f"{count_text(n, per_ctx, ctx_div, ctx_off)} clamps at 0: not split")
    # The SRAM sizes' exact piece (`Affine.piece`) of the count as one affine size.
    shares = [(Affine(per_ctx, ctx_off, ctx_div) + n).piece(i, pieces) for i in range(pieces)]
    if per_ctx == 0:
        return [(share(0), 0, 1, 0) for share in shares]
    split = []
    for share in shares:
        common = math.gcd(share.a, share.b, share.d)
        split.append((0, share.a // common, share.d // common, share.b // common))
    return split


def bound_counts(records: np.ndarray, ctx: int) -> np.ndarray:
    """Each record's count at context length `ctx` (int64; `n` where it has no context
    term)."""
    per_ctx = records["per_ctx"].astype(np.int64)
    divisor = np.maximum(records["ctx_div"].astype(np.int64), 1)
    grown = np.maximum(0, -(-(per_ctx * ctx + records["ctx_off"]) // divisor))
    return records["n"] + np.where(per_ctx != 0, grown, 0)


def bind_context(program: HbmProgram, ctx: int, source: str = "<program>") -> HbmProgram:
    """The program for context length `ctx`: every count `n + max(0, ceil((per_ctx * ctx +
    ctx_off) / ctx_div))`, `per_ctx` 0, `ctx_div` 1 and `ctx_off` 0; instructions whose count
    is 0 do nothing and are left out (sections shrink accordingly). HpimError names the line
    of a count that overflows."""
    if ctx < 0:
        raise HpimError(f"the context length must be non-negative, got {ctx}")
    records = program.records
    per_ctx = records["per_ctx"]
    count = bound_counts(records, ctx)
    overflow = np.flatnonzero((per_ctx != 0) & (count > MAX_COUNT))
    if len(overflow):
        i = int(overflow[0])
        formula = count_text(
            *(int(records[name][i]) for name in ("n", "per_ctx", "ctx_div", "ctx_off")), ctx
        )
        raise HpimError(
            f"{where(records, i, source)}: hbm.{HbmOp(int(records['op'][i])).name.lower()} count "
            f"{formula} = {count[i]} is more than {MAX_COUNT}"
        )
    bound = records.copy()
    bound["n"] = count
    bound["per_ctx"] = 0
    bound["ctx_div"] = 1
    bound["ctx_off"] = 0
    kept = ~((per_ctx != 0) & (count == 0))
    # A section's new bounds: how many kept records precede its old bounds.
    before = np.concatenate([[0], np.cumsum(kept)])
    sections = tuple(
        replace(s, start=int(before[s.start]), stop=int(before[s.stop])) for s in program.sections
    )
    return HbmProgram(bound[kept], sections)


def unroll(program: HbmProgram, repeat: int, row_stride: int) -> HbmProgram:
    """`repeat` copies of the program's records in order, copy `l` with every row (where the
    instruction has one) moved on by `l * row_stride`: what a repeated section stands for."""
    records = np.tile(program.records, repeat)
    has_row = records["row"] >= 0
    iteration = np.repeat(np.arange(repeat, dtype=np.int64), len(program.records))
    rows = np.where(has_row, records["row"] + iteration * row_stride, records["row"])
    if len(rows) and rows.max() > MAX_COUNT:
        raise HpimError(
            f"unrolling {repeat} times with row_stride={row_stride} moves a row to "
            f"{rows.max()}, past {MAX_COUNT}"
        )
    records["row"] = rows
    return HbmProgram(records)


def expand_sections(program: HbmProgram) -> HbmProgram:
    """The program as plain records: every section unrolled (`unroll`), in order."""
    if all(s.times == 1 for s in program.sections):
        return HbmProgram(program.records)
    parts = [
        unroll(HbmProgram(program.records[s.start : s.stop]), s.times, s.stride).records
        for s in program.sections
    ]
    return HbmProgram(np.concatenate(parts))


def where(records: np.ndarray, index: int, source: str) -> str:
    """`source:line` of record `index` for messages (`source: record i` without a line)."""
    line = int(records["line"][index])
    return f"{source}:{line}" if line > 0 else f"{source}: record {index}"
