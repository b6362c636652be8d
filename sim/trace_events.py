"""A simulated step as a Chrome / Perfetto trace-event timeline (opens in ui.perfetto.dev).

`trace_events(result)` turns a `MachineResult` into the JSON object format of the Trace Event
Format (`{"traceEvents": [...]}`); `write_trace_events(result, path)` writes it. Layout:

- process "HBM-PIM": one thread (track) per group of channels with identical activity (the
  same records at the same cycles: channels running the same tiles in lock-step share a
  track, named by their channel ranges), one slice per record on those channels; and a
  "sync" track with an instant per `signal` and a slice per `wait` from the time every
  earlier command had completed to the token's arrival;
- one process per SRAM-PIM core, one thread per unit it uses (PIM, VCU, TCU, transpose,
  transfer, SCU) and a "sync" track (signal, wait, barrier as instants);
- process "link": the transfers of each direction while they hold the link.

Slices are complete events (`ph: X`, `ts` and `dur` in microseconds as the format has
them, `displayTimeUnit` ns) named by instruction (`gemv`, `load_gb`, `mvm`, `softmax`, ...)
with arguments: section, iteration, record within the section's stream, source line,
sizes, `part` (when the program tags it), and the exact start and end in the subsystem's
cycles. On one track a slice is cut at the next slice's start: an HBM record's last column
commands complete after the next record's first command issued (in-order, pipelined issue),
and a track's slices must nest. The true end is in the arguments (`end_cycle`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.program import HbmOp
from hpim_ir.sim.sram.bind import UNITS
from hpim_ir.sim.sram.engine import TO_HBM, TO_SRAM
from hpim_ir.sim.sram.program import FORMS, PIM_ALLOC_SIZES, SramOp, Space, VcuFn
from hpim_ir.sim.sram.timing import Unit

HBM_PID, LINK_PID, FIRST_CORE_PID = 1, 2, 10
SYNC_TID = 1000

_HBM_SIZES = {
    HbmOp.GEMV: ("row", "rows", "cols"),
    HbmOp.READ: ("row", "rows", "cols"),
    HbmOp.WRITE: ("row", "rows", "cols"),
    HbmOp.LOAD_GB: ("cols",),
    HbmOp.READOUT: ("n",),
    HbmOp.MAC_AB: ("row", "col"),
    HbmOp.ACT_AB: ("row",),
    HbmOp.WR_GB: ("col",),
}
"""Per HBM instruction, the fields shown as arguments (`rows` is the record's `n`, `cols`
its `col`)."""


def trace_events(result) -> dict:
    """The trace-event JSON object of a `MachineResult` (see the module docstring)."""
    events: list[dict] = []
    step = result.step
    hbm_us = result.hbm_report.cycle_ns / 1000
    events += _process(HBM_PID, "HBM-PIM", 0)
    events += _hbm_tracks(result, hbm_us)
    if result.sram is not None:
        sram_us = result.sram_report.cycle_ns / 1000
        events += _process(LINK_PID, "link", 1)
        events += _sram_tracks(result, sram_us)
    other = {"hardware": result.hardware, "ctx": result.ctx, "ns": result.ns,
             "source": step.program.source}
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": other}


def write_trace_events(result, path: str | Path) -> None:
    """Write `trace_events(result)` to `path` as JSON."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(trace_events(result), out)
    except OSError as error:
        raise HpimError(f"cannot write {path}: {error.strerror}") from None


def _process(pid: int, name: str, order: int) -> list[dict]:
    return [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": order}},
    ]


def _thread(pid: int, tid: int, name: str) -> list[dict]:
    return [
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}},
        {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": tid}},
    ]


def _slices(pid: int, tid: int, names, starts, ends, args, us: float) -> list[dict]:
    """Complete events on one track: sorted by start, zero-length ones left out, each cut
    at the next one's start."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    shown = np.minimum(ends, np.append(starts[1:], np.iinfo(np.int64).max))
    events = []
    for k, i in enumerate(order.tolist()):
        if shown[k] <= starts[k]:
            continue
        events.append(
            {
                "ph": "X",
                "name": names[i],
                "pid": pid,
                "tid": tid,
                "ts": float(starts[k]) * us,
                "dur": float(shown[k] - starts[k]) * us,
                "args": args(i) | {"start_cycle": int(starts[k]), "end_cycle": int(ends[k])},
            }
        )
    return events


def _ranges(channels: list[int]) -> str:
    """`0-55, 60` for channels 0..55 and 60."""
    parts, first = [], channels[0]
    for previous, current in zip(channels, channels[1:] + [None]):
        if current != previous + 1:
            parts.append(str(first) if first == previous else f"{first}-{previous}")
            first = current
    return ", ".join(parts)


def _origin_args(step, origin, parts, record: int) -> dict:
    section = step.program.sections[int(origin.section[record])]
    args = {
        "section": section.name if section.name is not None else "",
        "iteration": int(origin.iteration[record]),
        "record": int(origin.record[record]),
    }
    if parts is not None:
        args["part"] = str(parts[record])
    return args


def _hbm_tracks(result, us: float) -> list[dict]:
    step = result.step
    records = step.hbm.records
    timeline = result.hbm.timeline
    parts = step.hbm_parts()
    ops = records["op"]
    names = [HbmOp(int(op)).name.lower() for op in ops.tolist()]

    def args(i: int) -> dict:
        base = _origin_args(step, step.hbm_origin, parts, i)
        if int(records["line"][i]) > 0:
            base["line"] = int(records["line"][i])
        fields = {"row": int(records["row"][i]), "rows": int(records["n"][i]),
                  "cols": int(records["col"][i]), "col": int(records["col"][i]),
                  "n": int(records["n"][i])}
        for name in _HBM_SIZES.get(HbmOp(int(ops[i])), ()):
            base[name] = fields[name]
        lo, hi = int(records["ch_lo"][i]), int(records["ch_hi"][i])
        if lo >= 0:
            base["channels"] = f"{lo}:{hi}" if hi >= 0 else "all"
        return base

    events: list[dict] = []
    on_channel = timeline[timeline["channel"] >= 0]
    order = np.lexsort((on_channel["record"], on_channel["channel"]))
    on_channel = on_channel[order]
    bounds = np.searchsorted(on_channel["channel"], np.arange(len(result.hbm_report.busy) + 1))
    groups: dict[bytes, list[int]] = {}
    for channel in range(len(bounds) - 1):
        mine = on_channel[bounds[channel] : bounds[channel + 1]]
        if len(mine) and (mine["end"] > mine["start"]).any():
            key = np.stack([mine["record"], mine["start"], mine["end"]]).tobytes()
            groups.setdefault(key, []).append(channel)
    for tid, channels in enumerate(sorted(groups.values()), start=1):
        mine = on_channel[bounds[channels[0]] : bounds[channels[0] + 1]]
        label = "channel" if len(channels) == 1 else "channels"
        events += _thread(HBM_PID, tid, f"{label} {_ranges(channels)}")
        record = mine["record"].astype(np.int64)
        events += _slices(
            HBM_PID, tid, [names[r] for r in record.tolist()], mine["start"], mine["end"],
            lambda k, record=record: args(int(record[k])), us,
        )
    sync = timeline[timeline["channel"] < 0]
    if len(sync):
        events += _thread(HBM_PID, SYNC_TID, "sync")
    for entry in sync.tolist():
        record, _, start, end = entry
        op = HbmOp(int(ops[record]))
        entry_args = args(record)
        if op in (HbmOp.SIGNAL, HbmOp.WAIT):
            entry_args["token"] = step.token_name(int(records["n"][record]))
        if op == HbmOp.WAIT and end > start:
            events.append({"ph": "X", "name": "wait", "pid": HBM_PID, "tid": SYNC_TID,
                           "ts": start * us, "dur": (end - start) * us, "args": entry_args})
        else:
            events.append({"ph": "i", "s": "t", "name": names[record], "pid": HBM_PID,
                           "tid": SYNC_TID, "ts": end * us, "args": entry_args})
    return events


def _sram_name(op: int, kind: int) -> str:
    return VcuFn(kind).name.lower() if op == SramOp.VCU else SramOp(op).name.lower()


def _sram_tracks(result, us: float) -> list[dict]:
    step = result.step
    records = step.sram.records
    timeline = result.sram.timeline
    parts = step.sram_parts()
    names = [_sram_name(op, kind) for op, kind in zip(records["op"].tolist(), records["kind"].tolist())]
    ctx = result.ctx

    def args(record: int) -> dict:
        base = _origin_args(step, step.sram_origin, parts, record)
        r = records[record]
        if int(r["line"]) > 0:
            base["line"] = int(r["line"])
        op = SramOp(int(r["op"]))
        sizes = PIM_ALLOC_SIZES if op == SramOp.ALLOC and r["kind"] == Space.PIM else FORMS[op].sizes
        for k, name in enumerate(sizes):
            a, b, d = int(r[f"a{k}"]), int(r[f"b{k}"]), int(r[f"d{k}"])
            base[name] = -(-(a * ctx + b) // d)
        if op in (SramOp.SIGNAL, SramOp.WAIT):
            base["token"] = step.token_name(int(r["tok"]))
        return base

    events: list[dict] = []
    op = timeline["op"].astype(np.int64)
    unit = np.full(len(timeline), -1, dtype=np.int64)
    for member, used in UNITS.items():
        unit[op == member] = int(used[0])
    core_bounds = np.searchsorted(timeline["core"], np.arange(len(result.sram_report.busy) + 1))
    for core in range(len(core_bounds) - 1):
        lo, hi = core_bounds[core], core_bounds[core + 1]
        mine, mine_unit = timeline[lo:hi], unit[lo:hi]
        if not len(mine):
            continue
        pid = FIRST_CORE_PID + core
        events += _process(pid, f"SRAM-PIM core {core}", 2 + core)
        record = mine["record"].astype(np.int64)
        for u in Unit:
            on = np.flatnonzero(mine_unit == u)
            if not len(on):
                continue
            events += _thread(pid, int(u) + 1, u.name.lower())
            events += _slices(
                pid, int(u) + 1, [names[r] for r in record[on].tolist()], mine["start"][on],
                mine["end"][on], lambda k, on=on, record=record: args(int(record[on[k]])), us,
            )
        sync = np.flatnonzero(np.isin(mine["op"], (SramOp.SIGNAL, SramOp.WAIT, SramOp.BARRIER)))
        if len(sync):
            events += _thread(pid, SYNC_TID, "sync")
        for k in sync.tolist():
            events.append({"ph": "i", "s": "t", "name": names[int(record[k])], "pid": pid,
                           "tid": SYNC_TID, "ts": float(mine["end"][k]) * us,
                           "args": args(int(record[k]))})
    for direction, label in ((TO_SRAM, "to SRAM-PIM"), (TO_HBM, "to HBM-PIM")):
        sending = (timeline["link_start"] >= 0) & (
            (op == SramOp.STORE) if direction == TO_HBM else (op != SramOp.STORE)
        )
        on = np.flatnonzero(sending)
        if not len(on):
            continue
        events += _thread(LINK_PID, direction + 1, label)
        record = timeline["record"].astype(np.int64)
        events += _slices(
            LINK_PID, direction + 1, [names[r] for r in record[on].tolist()],
            timeline["link_start"][on], timeline["link_end"][on],
            lambda k, on=on: args(int(record[on[k]])) | {"core": int(timeline["core"][on[k]])}, us,
        )
    return events
