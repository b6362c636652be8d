"""The whole-machine program: both instruction streams, section by section.

A compiled decode step is a module of sections (the prologue, the decoder layers, the
epilogue), each an `hbm_isa.stream` and an `sram_isa.stream` with the same `section` name and
`repeat` count (and, on HBM, a `row_stride`). `MachineProgram` holds them as the two
simulators' record arrays plus the section table; `MachineProgram.step(ctx)` is one decode
step at context length `ctx` as the central scheduler runs it (`MachineStep`):

- the HBM-PIM stream bound to `ctx` (`bind_context`), checked against the machine, and every
  section unrolled: iteration `l` of a repeated section moves every DRAM row by
  `l * row_stride` (the layer-major weight layout);
- the SRAM-PIM stream unrolled the same way (its sizes stay symbolic: the SRAM-PIM engine
  binds them to `ctx`);
- tokens renumbered so that each is raised once: a token signalled in a repeated section is
  a new token in every iteration (waits in that section name the same iteration's), every
  other token keeps one number;
- for every unrolled record, where it comes from (`Origin`: section, record of the
  section's stream, iteration), which is what messages, timelines and traces report.

Everything is numpy over records; a compiled OPT-30B step is about 15 000 HBM and 3 000 SRAM
records after unrolling. Programs come from a module (`from_module`), from an HBM-PIM-only
program (`from_hbm`), from assembly (`hpim_ir.asm.read_asm`), or from a file
(`read_program`: `.mlir` or `.hpimasm`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpim_ir.errors import HpimError
from hpim_ir.sim.hbm.engine import validate_program
from hpim_ir.sim.hbm.program import RECORD_DTYPE as HBM_RECORD_DTYPE
from hpim_ir.sim.hbm.program import (
    HbmOp,
    HbmProgram,
    Section,
    bind_context,
    has_context,
    where,
)
from hpim_ir.sim.sram.program import RECORD_DTYPE as SRAM_RECORD_DTYPE
from hpim_ir.sim.sram.program import SramOp, SramProgram

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.ir import Operation


@dataclass(frozen=True)
class MachineSection:
    """One section of the program: `repeat` iterations of its records in each stream
    (`hbm` and `sram` are [start, stop) into the program's record arrays)."""

    name: str | None
    repeat: int
    row_stride: int
    hbm: tuple[int, int]
    sram: tuple[int, int]

    def label(self) -> str:
        return f"section {self.name!r}" if self.name is not None else "the unnamed section"


@dataclass(frozen=True)
class MachineProgram:
    """Both instruction streams of a program, section by section (not yet unrolled)."""

    hbm: HbmProgram
    """Every section's HBM-PIM records, in section order (`hbm.sections` mirrors `sections`)."""
    sram: SramProgram
    """Every section's SRAM-PIM records, in section order."""
    sections: tuple[MachineSection, ...]
    source: str = "<program>"
    """The program's name in messages (its file)."""
    hbm_parts: np.ndarray | None = None
    """Per HBM record: its `part` attribute (the part of the model it works for, as
    `convert-pim-to-isa` tags instructions), "" where it has none; None: no record has one."""
    sram_parts: np.ndarray | None = None
    """Per SRAM record: its `part` attribute, as `hbm_parts`."""

    @property
    def has_sram(self) -> bool:
        """Whether the SRAM-PIM stream has any instruction (else: an HBM-PIM-only program)."""
        return len(self.sram.records) > 0

    @staticmethod
    def of(hbm: HbmProgram, sram: SramProgram, source: str = "<program>") -> MachineProgram:
        """One unnamed section of the two streams (tests, programs built in Python)."""
        section = MachineSection(None, 1, 0, (0, len(hbm.records)), (0, len(sram.records)))
        return MachineProgram(HbmProgram(hbm.records), sram, (section,), source)

    @staticmethod
    def from_hbm(program: HbmProgram, source: str = "<program>") -> MachineProgram:
        """An HBM-PIM-only program (what `read_asm` gives for HBM-PIM lines without parts),
        its sections kept."""
        sections = tuple(
            MachineSection(s.name, s.times, s.stride, (s.start, s.stop), (0, 0))
            for s in program.sections
        )
        empty = SramProgram(np.zeros(0, dtype=SRAM_RECORD_DTYPE))
        return MachineProgram(program, empty, sections, source)

    @staticmethod
    def from_module(
        module: ModuleOp, source: str = "<module>", lines: dict[Operation, int] | None = None
    ) -> MachineProgram:
        """The program of a module's top-level `hbm_isa.stream`s and `sram_isa.stream`s.

        Consecutive streams with the same `section` name (or both unnamed) form one section,
        at most one stream per subsystem; both streams of a section must have the same
        `repeat`. `lines` gives the source line of instructions (from `read_program`) for
        messages. HpimError names an invalid stream or a mismatched section."""
        from hpim_ir.dialects import hbm_isa, sram_isa

        groups: list[dict[str, object]] = []
        for op in module.ops:
            if not isinstance(op, (hbm_isa.StreamOp, sram_isa.StreamOp)):
                continue
            kind = "hbm" if isinstance(op, hbm_isa.StreamOp) else "sram"
            name = op.section.data if op.section is not None else None
            if not groups or groups[-1]["name"] != name or kind in groups[-1]:
                groups.append({"name": name})
            groups[-1][kind] = op
        if not groups:
            raise HpimError(f"{source}: no hbm_isa.stream or sram_isa.stream in the module")
        lines = lines or {}
        hbm_chunks, sram_chunks, sections, hbm_sections = [], [], [], []
        hbm_tags: list[str] = []
        sram_tags: list[str] = []
        hbm_count = sram_count = 0
        for group in groups:
            hbm_stream, sram_stream = group.get("hbm"), group.get("sram")
            repeats = {
                kind: stream.repeat_count
                for kind, stream in (("hbm", hbm_stream), ("sram", sram_stream))
                if stream is not None
            }
            if len(set(repeats.values())) > 1:
                raise HpimError(
                    f"{source}: section {group['name']!r}: hbm_isa.stream repeat="
                    f"{repeats['hbm']} but sram_isa.stream repeat={repeats['sram']} "
                    "(the two streams of a section repeat together)"
                )
            repeat = next(iter(repeats.values()))
            if hbm_stream is not None:
                hbm_records = hbm_isa.program_from_streams([hbm_stream]).records
                hbm_records["line"] = [lines.get(op, 0) for op in hbm_stream.body.block.ops]
                hbm_tags += [_part(op) for op in hbm_stream.body.block.ops]
                stride = hbm_stream.row_stride_value
            else:
                hbm_records, stride = np.zeros(0, dtype=HBM_RECORD_DTYPE), 0
            if sram_stream is not None:
                sram_records = sram_isa.program_from_ops(sram_stream).records
                sram_records["line"] = [lines.get(op, 0) for op in sram_stream.body.block.ops]
                sram_tags += [_part(op) for op in sram_stream.body.block.ops]
            else:
                sram_records = np.zeros(0, dtype=SRAM_RECORD_DTYPE)
            hbm_range = (hbm_count, hbm_count + len(hbm_records))
            sram_range = (sram_count, sram_count + len(sram_records))
            hbm_count, sram_count = hbm_range[1], sram_range[1]
            name = group["name"]
            sections.append(MachineSection(name, repeat, stride, hbm_range, sram_range))
            # The HBM-PIM sections keep which fields the streams give (None: neither does),
            # so that the assembly's `.section` line says exactly what the module said.
            streams = [stream for stream in (hbm_stream, sram_stream) if stream is not None]
            given_repeat = repeat if any(s.repeat is not None for s in streams) else None
            given_stride = hbm_stream.row_stride if hbm_stream is not None else None
            hbm_sections.append(
                Section(
                    *hbm_range,
                    name,
                    given_repeat,
                    given_stride.value.data if given_stride is not None else None,
                )
            )
            hbm_chunks.append(hbm_records)
            sram_chunks.append(sram_records)
        hbm = HbmProgram(np.concatenate(hbm_chunks), tuple(hbm_sections))
        sram = SramProgram(np.concatenate(sram_chunks))
        tagged = any(hbm_tags) or any(sram_tags)
        return MachineProgram(
            hbm,
            sram,
            tuple(sections),
            source,
            np.array(hbm_tags, dtype=str) if tagged else None,
            np.array(sram_tags, dtype=str) if tagged else None,
        )

    def step(self, hw, ctx: int | None = None) -> MachineStep:
        """One decode step at context length `ctx` on `hw`, ready to simulate (see the
        module docstring). HpimError names a record the machine cannot run, a count that
        needs a context length when none is given, or a token raised more than once."""
        if ctx is None:
            self._require_no_context()
        if ctx is not None and ctx < 0:
            raise HpimError(f"the context length must be non-negative, got {ctx}")
        hbm_index, hbm = self._bound_hbm(hw, ctx)
        return MachineStep.build(self, hbm, hbm_index, 0 if ctx is None else ctx)

    def _require_no_context(self) -> None:
        """HpimError naming the first instruction (HBM-PIM first) whose size depends on the
        context length."""
        records = self.hbm.records
        if has_context(self.hbm):
            first = int(np.argmax(records["per_ctx"] != 0))
            what = f"hbm.{HbmOp(int(records['op'][first])).name.lower()}"
            at = where(records, first, self.source)
        else:
            sram = self.sram.records
            varying = np.zeros(len(sram), dtype=bool)
            for i in range(3):
                varying |= sram[f"a{i}"] != 0
            if not varying.any():
                return
            first = int(np.argmax(varying))
            from hpim_ir.sim.sram.bind import op_name, where as sram_where

            what = op_name(int(sram["op"][first]), int(sram["kind"][first]))
            at = sram_where(self.source, sram, first)
        raise HpimError(
            f"{at}: {what} depends on the context length (ctx=); give one to simulate it "
            "(simulate_machine(..., ctx=N), hpim run-isa --ctx N)"
        )

    def _bound_hbm(self, hw, ctx: int | None) -> tuple[np.ndarray, HbmProgram]:
        """The HBM program bound to `ctx` and checked, and for each of its records the index
        of the record it comes from (instructions whose count is 0 at `ctx` drop out)."""
        program = self.hbm
        index = np.arange(len(program.records))
        bound = program
        if ctx is not None and has_context(program):
            # Binding keeps `col` as it is: carry each record's index through it there.
            marked = program.records.copy()
            marked["col"] = index
            bound = bind_context(HbmProgram(marked, program.sections), ctx, self.source)
            index = bound.records["col"].astype(np.int64)
            bound.records["col"] = program.records["col"][index]
        sram = self.sram.records
        # The other stream's tokens count as provided; a wait for an HBM-PIM token raised
        # only after it is reported here, one the SRAM-PIM side raises too late by the
        # scheduler.
        provided = sram["tok"][sram["op"] == SramOp.SIGNAL].tolist()
        validate_program(bound, hw, self.source, dict.fromkeys(provided, 0))
        return index, bound


@dataclass(frozen=True)
class Origin:
    """Where each unrolled record comes from: its section (index into
    `MachineProgram.sections`), its record within that section's stream, and the
    iteration of the section."""

    section: np.ndarray
    record: np.ndarray
    iteration: np.ndarray

    def __len__(self) -> int:
        return len(self.section)


@dataclass(frozen=True)
class MachineStep:
    """One decode step of a `MachineProgram` at context length `ctx`: each stream plain
    (unrolled, tokens renumbered), and the map back to the program."""

    program: MachineProgram
    ctx: int
    hbm: HbmProgram
    """Bound to `ctx`, validated, unrolled; one plain section."""
    sram: SramProgram
    """Unrolled; sizes still symbolic in `ctx` (the SRAM-PIM engine binds them)."""
    hbm_origin: Origin
    sram_origin: Origin
    token_origin: np.ndarray
    """Per renumbered token: (original token, iteration or -1 when it is not renumbered)."""

    @staticmethod
    def build(
        program: MachineProgram, hbm: HbmProgram, hbm_index: np.ndarray, ctx: int
    ) -> MachineStep:
        sections = program.sections
        hbm_offsets = np.array([s.hbm[0] for s in sections], dtype=np.int64)
        # Bound records per section (records whose count is 0 at ctx dropped out).
        hbm_bounds = [(s.start, s.stop) for s in hbm.sections]
        hbm_origin, hbm_take = _unroll(sections, hbm_bounds)
        sram_origin, sram_take = _unroll(sections, [s.sram for s in sections])
        hbm_records = hbm.records[hbm_take]
        # Map the record back to its index in the program, then to its section's stream.
        original = hbm_index[hbm_take]
        hbm_origin = Origin(
            hbm_origin.section,
            original - hbm_offsets[hbm_origin.section],
            hbm_origin.iteration,
        )
        sram_records = program.sram.records[sram_take]
        sram_offsets = np.array([s.sram[0] for s in sections], dtype=np.int64)
        sram_origin = Origin(
            sram_origin.section,
            sram_origin.record - sram_offsets[sram_origin.section],
            sram_origin.iteration,
        )
        strides = np.array([s.row_stride for s in sections], dtype=np.int64)
        move = strides[hbm_origin.section] * hbm_origin.iteration
        has_row = hbm_records["row"] >= 0
        hbm_records["row"] = np.where(has_row, hbm_records["row"] + move, hbm_records["row"])
        hbm_records["per_ctx"], hbm_records["ctx_div"], hbm_records["ctx_off"] = 0, 1, 0
        step = MachineStep(
            program,
            ctx,
            HbmProgram(hbm_records),
            SramProgram(sram_records),
            hbm_origin,
            sram_origin,
            np.zeros((0, 2), dtype=np.int64),
        )
        return step._renumbered()

    @property
    def hbm_program_index(self) -> np.ndarray:
        """Per unrolled HBM record: the index of its record in `program.hbm`."""
        offsets = np.array([s.hbm[0] for s in self.program.sections], dtype=np.int64)
        return offsets[self.hbm_origin.section] + self.hbm_origin.record

    @property
    def sram_program_index(self) -> np.ndarray:
        """Per unrolled SRAM-PIM record: the index of its record in `program.sram`."""
        offsets = np.array([s.sram[0] for s in self.program.sections], dtype=np.int64)
        return offsets[self.sram_origin.section] + self.sram_origin.record

    def hbm_parts(self) -> np.ndarray | None:
        """Per unrolled HBM record: its `part` (None: the program has none)."""
        parts = self.program.hbm_parts
        return None if parts is None else parts[self.hbm_program_index]

    def sram_parts(self) -> np.ndarray | None:
        """Per unrolled SRAM-PIM record: its `part` (None: the program has none)."""
        parts = self.program.sram_parts
        return None if parts is None else parts[self.sram_program_index]

    # -- tokens ------------------------------------------------------------------------------

    def _renumbered(self) -> MachineStep:
        """This step with every token renumbered (see the module docstring)."""
        hbm, sram = self.hbm.records, self.sram.records
        hbm_sync = np.flatnonzero((hbm["op"] == HbmOp.SIGNAL) | (hbm["op"] == HbmOp.WAIT))
        sram_sync = np.flatnonzero((sram["op"] == SramOp.SIGNAL) | (sram["op"] == SramOp.WAIT))
        # Every sync record of both streams: (stream 0 HBM / 1 SRAM, index, token, signal?).
        stream = np.concatenate([np.zeros(len(hbm_sync), int), np.ones(len(sram_sync), int)])
        index = np.concatenate([hbm_sync, sram_sync])
        token = np.concatenate([hbm["n"][hbm_sync], sram["tok"][sram_sync]]).astype(np.int64)
        signal = np.concatenate(
            [hbm["op"][hbm_sync] == HbmOp.SIGNAL, sram["op"][sram_sync] == SramOp.SIGNAL]
        )
        section = np.concatenate(
            [self.hbm_origin.section[hbm_sync], self.sram_origin.section[sram_sync]]
        )
        iteration = np.concatenate(
            [self.hbm_origin.iteration[hbm_sync], self.sram_origin.iteration[sram_sync]]
        )
        tokens, which = np.unique(token, return_inverse=True)
        # The section of each token's first signal (-1: never signalled).
        home = np.full(len(tokens), -1, dtype=np.int64)
        first_signal = np.full(len(tokens), -1, dtype=np.int64)
        signals = np.flatnonzero(signal)
        order = signals[np.argsort(which[signals], kind="stable")]
        seen_token, first = np.unique(which[order], return_index=True)
        home[seen_token] = section[order[first]]
        first_signal[seen_token] = order[first]
        for i in signals.tolist():  # a token raised in two sections: name both raisers
            j = int(first_signal[which[i]])
            if section[i] != home[which[i]]:
                raise HpimError(
                    f"token {tokens[which[i]]} is raised by {self._sync_where(stream, index, j)}"
                    f" and by {self._sync_where(stream, index, i)}: a token is raised once"
                )
        repeats = np.array([s.repeat for s in self.program.sections], dtype=np.int64)
        per_iteration = (home >= 0) & (repeats[np.maximum(home, 0)] > 1)
        stray = np.flatnonzero(per_iteration[which] & (section != home[which]))
        if len(stray):
            i = int(stray[0])
            j = int(first_signal[which[i]])
            home_section = self.program.sections[int(home[which[i]])]
            raise HpimError(
                f"{self._sync_where(stream, index, i)} waits for token {tokens[which[i]]}, which "
                f"{self._sync_where(stream, index, j)} raises in every iteration of "
                f"{home_section.label()} (repeat={home_section.repeat}): a wait outside that "
                "section cannot say which iteration's it means"
            )
        width = np.where(per_iteration, repeats[np.maximum(home, 0)], 1)
        base = np.cumsum(width) - width
        renumbered = base[which] + np.where(per_iteration[which], iteration, 0)
        hbm_records, sram_records = hbm.copy(), sram.copy()
        hbm_records["n"][hbm_sync] = renumbered[: len(hbm_sync)]
        sram_records["tok"][sram_sync] = renumbered[len(hbm_sync) :]
        origin = np.stack(
            [
                np.repeat(tokens, width),
                np.concatenate([np.arange(w) if p else [-1] for w, p in zip(width, per_iteration)])
                if len(tokens)
                else np.zeros(0, dtype=np.int64),
            ],
            axis=1,
        ).astype(np.int64)
        step = MachineStep(
            self.program,
            self.ctx,
            HbmProgram(hbm_records),
            SramProgram(sram_records),
            self.hbm_origin,
            self.sram_origin,
            origin,
        )
        # Within one iteration a token is still raised once: two raisers in one section.
        raised = renumbered[signal]
        unique, first, counts = np.unique(raised, return_index=True, return_counts=True)
        if (counts > 1).any():
            new = int(unique[np.argmax(counts > 1)])
            twice = signals[raised == new]
            raise HpimError(
                f"{step.token_name(new)} is raised by {step._sync_where(stream, index, twice[0])} "
                f"and by {step._sync_where(stream, index, twice[1])}: a token is raised once"
            )
        return step

    def token_name(self, token: int) -> str:
        """`token 6 (iteration 3 of section 'layers')` for a renumbered token."""
        original, iteration = self.token_origin[token].tolist()
        if iteration < 0:
            return f"token {original}"
        home = self._home_section(token)
        return f"token {original} (iteration {iteration} of {home.label()})"

    def _home_section(self, token: int) -> MachineSection:
        hbm, sram = self.hbm.records, self.sram.records
        for records, origin, op, field_name in (
            (hbm, self.hbm_origin, HbmOp.SIGNAL, "n"),
            (sram, self.sram_origin, SramOp.SIGNAL, "tok"),
        ):
            hits = np.flatnonzero((records["op"] == op) & (records[field_name] == token))
            if len(hits):
                return self.program.sections[int(origin.section[hits[0]])]
        raise AssertionError(f"renumbered token {token} has no raiser")

    def _sync_where(self, stream: np.ndarray, index: np.ndarray, i: int) -> str:
        """The instruction of sync entry `i` (see `_renumbered`), for messages."""
        if stream[i] == 0:
            return self.hbm_instruction(int(index[i]))
        return self.sram_instruction(int(index[i]))

    # -- where records come from -------------------------------------------------------------

    def hbm_where(self, i: int) -> str:
        """Where unrolled HBM record `i` is written: `file:line` or its section and record,
        and the iteration of a repeated section."""
        return self._where(self.hbm.records, self.hbm_origin, i, "hbm_isa")

    def sram_where(self, i: int) -> str:
        """Where unrolled SRAM record `i` is written (as `hbm_where`)."""
        return self._where(self.sram.records, self.sram_origin, i, "sram_isa")

    def hbm_instruction(self, i: int) -> str:
        """`hbm.wait tok=6 at p.mlir:42 (iteration 3 of section 'layers')`."""
        record = self.hbm.records[i]
        op = HbmOp(int(record["op"]))
        text = f"hbm.{op.name.lower()}"
        if op in (HbmOp.SIGNAL, HbmOp.WAIT):
            text += f" tok={self._original(int(record['n']))}"
        return f"{text} at {self.hbm_where(i)}"

    def sram_instruction(self, i: int) -> str:
        """`sram.signal tok=6 cores=0:32 at p.mlir:90 (...)`."""
        from hpim_ir.sim.sram.bind import op_name

        record = self.sram.records[i]
        text = op_name(int(record["op"]), int(record["kind"]))
        if record["op"] in (SramOp.SIGNAL, SramOp.WAIT):
            text += f" tok={self._original(int(record['tok']))}"
        lo, hi = int(record["core_lo"]), int(record["core_hi"])
        text += "" if (lo, hi) == (0, -1) else f" cores={lo}:{hi}"
        return f"{text} at {self.sram_where(i)}"

    def _original(self, token: int) -> int:
        """The program's number of a token (tokens are renumbered once the step is made)."""
        return int(self.token_origin[token][0]) if len(self.token_origin) else token

    def _where(self, records: np.ndarray, origin: Origin, i: int, dialect: str) -> str:
        section = self.program.sections[int(origin.section[i])]
        line = int(records["line"][i])
        iteration = int(origin.iteration[i])
        if line > 0:
            text = f"{self.program.source}:{line}"
        else:
            text = (
                f"{self.program.source}: {dialect} record {int(origin.record[i])} of "
                f"{section.label()}"
            )
        if section.repeat > 1:
            text += f" (iteration {iteration} of {section.label()})" if line > 0 else (
                f", iteration {iteration}"
            )
        return text


def _part(op: Operation) -> str:
    """An instruction's `part` attribute ("" if it has none)."""
    from xdsl.dialects.builtin import StringAttr

    tag = op.attributes.get("part")
    return tag.data if isinstance(tag, StringAttr) else ""


def _unroll(
    sections: tuple[MachineSection, ...], bounds: list[tuple[int, int]]
) -> tuple[Origin, np.ndarray]:
    """The unrolled order of records `bounds[s]` of each section s: the record indices to
    take, and each one's section, record (index, not yet made section-relative) and
    iteration."""
    takes, section_of, iterations = [], [], []
    for number, (section, (start, stop)) in enumerate(zip(sections, bounds)):
        count = stop - start
        takes.append(np.tile(np.arange(start, stop, dtype=np.int64), section.repeat))
        iterations.append(np.repeat(np.arange(section.repeat, dtype=np.int64), count))
        section_of.append(np.full(count * section.repeat, number, dtype=np.int64))
    take = np.concatenate(takes) if takes else np.zeros(0, dtype=np.int64)
    origin = Origin(
        np.concatenate(section_of) if takes else np.zeros(0, dtype=np.int64),
        take.copy(),
        np.concatenate(iterations) if takes else np.zeros(0, dtype=np.int64),
    )
    return origin, take


def read_program(path: str | Path) -> MachineProgram:
    """The program in file `path`: an MLIR module of ISA streams (`.mlir`, or any other
    name) or `.hpimasm` assembly. HpimError names a file that cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HpimError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise HpimError(f"cannot read {path}: not UTF-8 text") from None
    source = str(path)
    if path.suffix == ".hpimasm":
        from hpim_ir.asm import read_asm

        program = read_asm(text, source)
        if isinstance(program, MachineProgram):  # SRAM-PIM lines or parts
            return program
        return MachineProgram.from_hbm(program, source)
    return parse_program(text, source)


def parse_program(text: str, source: str = "<input>") -> MachineProgram:
    """The program of the MLIR module in `text` (file `source`), each instruction with its
    source line. HpimError carries `file:line:col` of a parse or verifier error."""
    from xdsl.context import Context
    from xdsl.utils.exceptions import ParseError, VerifyException

    from hpim_ir.opt import LocatingParser, verify_located
    from hpim_ir.universe import register_dialects

    parser = LocatingParser(register_dialects(Context()), text, source)
    try:
        module = parser.parse_module()
        verify_located(module, parser.starts)
    except (ParseError, VerifyException) as error:
        raise HpimError(str(error)) from None
    newlines = [match.start() for match in re.finditer("\n", text)]
    lines = {op: bisect.bisect_left(newlines, span.start) + 1 for op, span in parser.starts.items()}
    return MachineProgram.from_module(module, source, lines)
