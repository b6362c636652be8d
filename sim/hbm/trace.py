"""The command trace: every device command the controllers issued, for independent checks.

In memory a trace is a numpy array of `TRACE_DTYPE`, one record per command, sorted by cycle,
then channel, then issue order. On disk it is CSV with the header
`cycle,channel,pseudo_channel,rank,bank_group,bank,command,row,column`. Every command in this
ISA is all-bank or addresses no bank, so each is ONE line: all-bank commands (`ACT_AB`,
`PRE_AB`, `REF_AB`, `MAC_AB`) carry `*` in the four bank fields (every pseudo-channel, rank,
bank group and bank of the channel), and the global-buffer / PU-output bursts (`WR_GB`,
`RD_OUT`) carry `-` (no bank). `row` and `column` are `-` where the command has none; the
column of `WR_GB` is its buffer slot.
"""

from typing import TextIO

import numpy as np

from hpim_ir.sim.hbm.timing import Cmd

TRACE_DTYPE = np.dtype(
    [
        ("cycle", np.int64),
        ("channel", np.int32),
        ("command", np.uint8),
        ("row", np.int32),
        ("column", np.int32),
    ]
)

CSV_HEADER = "cycle,channel,pseudo_channel,rank,bank_group,bank,command,row,column"

ALL_BANKS = frozenset({Cmd.ACT_AB, Cmd.PRE_AB, Cmd.REF_AB, Cmd.MAC_AB})


def assemble_trace(parts: list) -> np.ndarray:
    """The sorted trace of `(channel, pieces)` parts; each piece is `(first cycle, step,
    count, command, row, column or columns)` and a channel's pieces are in issue order."""
    pieces = [(channel,) + piece for channel, channel_pieces in parts for piece in channel_pieces]
    if not pieces:
        return np.zeros(0, TRACE_DTYPE)
    channel, first, step, count, command, row = (
        np.array([piece[i] for piece in pieces], dtype=np.int64) for i in range(6)
    )
    total = int(count.sum())
    offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    trace = np.empty(total, TRACE_DTYPE)
    trace["cycle"] = np.repeat(first, count) + np.repeat(step, count) * offset
    trace["channel"] = np.repeat(channel, count)
    trace["command"] = np.repeat(command, count)
    trace["row"] = np.repeat(row, count)
    trace["column"] = np.concatenate(
        [np.broadcast_to(piece[6], (piece[3],)) for piece in pieces]
    )
    # Ties in (cycle, channel) keep the channel's issue order.
    return trace[np.lexsort((np.arange(total), trace["channel"], trace["cycle"]))]


def write_trace_csv(trace: np.ndarray, stream: TextIO) -> None:
    """Write `trace` as CSV (header first) to `stream`."""
    names = [Cmd(code).name for code in range(len(Cmd))]
    banks = ["*,*,*,*" if Cmd(code) in ALL_BANKS else "-,-,-,-" for code in range(len(Cmd))]
    stream.write(CSV_HEADER + "\n")
    stream.writelines(
        f"{cycle},{channel},{banks[command]},{names[command]},"
        f"{row if row >= 0 else '-'},{column if column >= 0 else '-'}\n"
        for cycle, channel, command, row, column in trace.tolist()
    )
