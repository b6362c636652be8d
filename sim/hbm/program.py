"""The HBM-PIM instruction stream as the simulator consumes it.

One numpy structured array, one record per instruction, in program order. Raw commands
(`wr_gb`, `mac_ab`, `act_ab`, `pre_ab`, `rd_out`, `barrier`) and macro-instructions (`gemv`,
`load_gb`, `readout`) share the record layout, so a 66k-line micro-benchmark and a compiled
model are the same kind of object. A macro-instruction stands for exactly the raw sequence
documented on its `HbmOp` member; the engines never need to materialize that sequence.

Channel fields are a half-open range `[ch_lo, ch_hi)`: a raw command on channel C has
`ch_lo = C, ch_hi = C + 1`; `ch_lo = 0, ch_hi = -1` means every channel of the machine
(`hbm.barrier` with no channel); signal and wait carry `-1, -1`. Both the
assembly reader (`hpim_ir.asm`) and the `hbm_isa` dialect produce this array.
"""

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


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


RECORD_DTYPE = np.dtype(
    [
        ("op", np.uint8),
        ("ch_lo", np.int32),
        ("ch_hi", np.int32),
        ("row", np.int32),  # -1 where the instruction has no row
        ("col", np.int32),  # column / buffer slot; gemv and load_gb: columns; -1 if none
        ("n", np.int32),  # gemv: rows; readout: bursts; signal/wait: token; else 1
        ("line", np.int32),  # source line (1-based) for messages; 0 if none
    ]
)


@dataclass(frozen=True)
class HbmProgram:
    """An HBM-PIM instruction stream: `records` is a 1-D array of `RECORD_DTYPE`."""

    records: np.ndarray

    def __post_init__(self) -> None:
        if self.records.dtype != RECORD_DTYPE or self.records.ndim != 1:
            raise TypeError("HbmProgram.records must be a 1-D array of RECORD_DTYPE")

    def __len__(self) -> int:
        return len(self.records)

    @staticmethod
    def from_rows(rows: list[tuple[int, int, int, int, int, int, int]]) -> "HbmProgram":
        """Build from (op, ch_lo, ch_hi, row, col, n, line) tuples (tests, small programs)."""
        return HbmProgram(np.array(rows, dtype=RECORD_DTYPE))
