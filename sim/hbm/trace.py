"""The command trace: every device command the controllers issued, for independent checks.

In memory a trace is a numpy array of `TRACE_DTYPE`, one record per command, sorted by cycle,
then channel, then issue order. On disk it is CSV with the header
`cycle,channel,pseudo_channel,rank,bank_group,bank,command,row,column`, one line per
command. A single-bank command (`ACT`, `PRE`, `RD`, `WR`, `RDA`, `WRA`) carries its bank's
address in the four bank fields; an all-bank command (`ACT_AB`, `PRE_AB`, `REF_AB`,
`MAC_AB`) carries `*` (every pseudo-channel, rank, bank group and bank of the channel), and
the global-buffer / PU-output bursts (`WR_GB`, `RD_OUT`) carry `-` (no bank). `row` and
`column` are `-` where the command has none; the column of `WR_GB` is its buffer slot.
"""

from typing import TextIO

import numpy as np

from hpim_ir.sim.hbm.normal import BankGeometry
from hpim_ir.sim.hbm.timing import ALL_BANK_COMMANDS, Cmd

TRACE_DTYPE = np.dtype(
    [
        ("cycle", np.int64),
        ("channel", np.int32),
        ("command", np.uint8),
        ("row", np.int32),
        ("column", np.int32),
        ("pseudo_channel", np.int16),  # the four bank fields: -1 unless a single-bank command
        ("rank", np.int16),
        ("bank_group", np.int16),
        ("bank", np.int16),
    ]
)

CSV_HEADER = "cycle,channel,pseudo_channel,rank,bank_group,bank,command,row,column"


def assemble_trace(parts: list, geometry: BankGeometry) -> np.ndarray:
    """The sorted trace of `(channel, pieces)` parts; each piece is `(first cycle, step,
    count, command, row, column, bank)` (`controller.Piece`) and a channel's pieces are in
    issue order."""
    pieces = [(channel,) + piece for channel, channel_pieces in parts for piece in channel_pieces]
    if not pieces:
        return np.zeros(0, TRACE_DTYPE)
    count = np.array([piece[3] for piece in pieces], dtype=np.int64)
    starts = np.cumsum(count) - count
    total = int(count.sum())

    def column(i: int) -> np.ndarray:
        """Field `i` of every piece laid out over its count: repeated, or its array."""
        values = [piece[i] for piece in pieces]
        try:  # all one value per piece (a one-command array is its value)
            return np.repeat(np.array(values, dtype=np.int64), count)
        except ValueError:
            arrays = [k for k, value in enumerate(values) if isinstance(value, np.ndarray)]
            for k in arrays:
                values[k] = 0
            laid_out = np.repeat(np.array(values, dtype=np.int64), count)
            for k in arrays:
                laid_out[starts[k] : starts[k] + count[k]] = pieces[k][i]
            return laid_out

    offset = np.arange(total) - np.repeat(starts, count)
    trace = np.empty(total, TRACE_DTYPE)
    trace["cycle"] = column(1) + column(2) * offset
    trace["channel"] = column(0)
    trace["command"] = column(4)
    trace["row"] = column(5)
    trace["column"] = column(6)
    bank = column(7)
    single = bank >= 0
    pseudo_channel, rank, group, in_group = geometry.address(np.where(single, bank, 0))
    fields = {"pseudo_channel": pseudo_channel, "rank": rank, "bank_group": group}
    for name, value in {**fields, "bank": in_group}.items():
        trace[name] = np.where(single, value, -1)
    # Ties in (cycle, channel) keep the channel's issue order.
    return trace[np.lexsort((np.arange(total), trace["channel"], trace["cycle"]))]


def write_trace_csv(trace: np.ndarray, stream: TextIO) -> None:
    """Write `trace` as CSV (header first) to `stream`."""
    names = [Cmd(code).name for code in range(len(Cmd))]
    shared = [
        "*,*,*,*" if Cmd(code) in ALL_BANK_COMMANDS else "-,-,-,-" for code in range(len(Cmd))
    ]
    stream.write(CSV_HEADER + "\n")
    stream.writelines(
        f"{cycle},{channel},"
        + (f"{pc},{rank},{group},{bank}" if bank >= 0 else shared[command])
        + f",{names[command]},{row if row >= 0 else '-'},{column if column >= 0 else '-'}\n"
        for cycle, channel, command, row, column, pc, rank, group, bank in trace.tolist()
    )
