"""The network-on-chip: routes, link reservations, and the collectives' schedules.

A transfer of `bytes` from core a to core b follows its route (`Noc.route`): a list of
directed links. It starts at the first cycle s >= its request at which every link of the
route is free for ser = ceil(bytes / link bytes per cycle) cycles, holds all of them during
[s, s + ser), and completes at s + ser + hops * hop_cycles (the head's latency through the
routers). Transfers that share a link therefore serialize; reservations are first-fit in
the order the engine makes them, and a collective makes all of its own when its last
participant arrives.
"""

import bisect
from functools import cache
from typing import NamedTuple

from hpim_ir.hardware.sram import NocTopology, SramConfig
from hpim_ir.sim.sram.program import SramOp
from hpim_ir.sim.sram.timing import ceil_div, noc_cycles, reduce_combine_cycles


class _Replayed(NamedTuple):
    """A link's calendar as a replayed collective left it: the collective's reservations on
    the link, relative to its start, shifted by `offset`; written out as a list only when a
    transfer needs the calendar (most replays are followed by replays)."""

    offset: int
    intervals: tuple[tuple[int, int], ...]


class Noc:
    """The links of one machine's NoC and their reservations (a calendar per link)."""

    def __init__(self, sram: SramConfig):
        self.sram = sram
        self.busy: dict[int, list[tuple[int, int]] | _Replayed] = {}
        """Directed link -> its reserved [start, end) intervals, sorted and disjoint (or a
        replayed collective's, `_Replayed`). Collectives start in cycle order and none
        requests a link before its start, so a reservation that ended before a collective's
        start can never delay anything again and is dropped when the link is reset."""
        self.busy_cycles = 0
        """Link-cycles reserved so far (a transfer over h links for ser cycles adds h * ser)."""
        self.route = cache(self._route)
        self.schedules: dict[tuple, tuple[int, dict[int, tuple[tuple[int, int], ...]], int]] = {}
        """Collectives run on links free from their start on, relative to the start:
        (op, members, bytes) -> (duration, link -> reservations, link-cycles)."""

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        """Directed links from core `src` to core `dst`. A link is `core * 4 + direction`
        (0 east / clockwise, 1 west / counter-clockwise, 2 south, 3 north) of the core it
        leaves."""
        sram = self.sram
        links = []
        if sram.noc.topology is NocTopology.RING:
            cores = sram.cores
            forward = (dst - src) % cores
            step, direction, hops = (
                (1, 0, forward) if forward <= cores - forward else (-1, 1, cores - forward)
            )
            at = src
            for _ in range(hops):
                links.append(at * 4 + direction)
                at = (at + step) % cores
            return tuple(links)
        cols = sram.noc.mesh_cols
        (row, col), (to_row, to_col) = divmod(src, cols), divmod(dst, cols)
        while col != to_col:  # X first
            direction, step = (0, 1) if to_col > col else (1, -1)
            links.append((row * cols + col) * 4 + direction)
            col += step
        while row != to_row:
            direction, step = (2, 1) if to_row > row else (3, -1)
            links.append((row * cols + col) * 4 + direction)
            row += step
        return tuple(links)

    def _end(self, link: int) -> int:
        """The end of the link's last reservation (0: none)."""
        entry = self.busy.get(link)
        if not entry:
            return 0
        if isinstance(entry, _Replayed):
            return entry.offset + entry.intervals[-1][1]
        return entry[-1][1]

    def _calendar(self, link: int) -> list[tuple[int, int]]:
        """The link's reservations as a list (written out from a replay if need be)."""
        entry = self.busy.get(link)
        if isinstance(entry, _Replayed):
            offset = entry.offset
            entry = self.busy[link] = [(offset + begin, offset + end) for begin, end in entry.intervals]
        elif entry is None:
            entry = self.busy[link] = []
        return entry

    def transfer(self, src: int, dst: int, ser: int, request: int) -> int:
        """Reserve the route from `src` to `dst` for `ser` cycles (`noc_cycles` of the
        bytes) from cycle `request` on; the cycle the data has arrived."""
        links = self.route(src, dst)
        start = request
        moved = True
        while moved:  # first fit: push start past every conflicting reservation
            moved = False
            for link in links:
                intervals = self._calendar(link)
                at = bisect.bisect_right(intervals, (start, float("inf"))) - 1
                for begin, end in intervals[max(at, 0) :]:
                    if begin >= start + ser:
                        break
                    if end > start:
                        start, moved = end, True
        for link in links:
            bisect.insort(self._calendar(link), (start, start + ser))
        self.busy_cycles += len(links) * ser
        return start + ser + len(links) * self.sram.noc.hop_cycles

    def collective(self, op: SramOp, cores: range, nbytes: int, start: int) -> int:
        """Run a collective among `cores` from cycle `start`; the cycle it completes.

        A collective whose links are all free from `start` on reserves exactly what the same
        collective did on free links before, shifted: its reservations only meet each other.
        Such runs are replayed from `schedules` (the tests compare with `_collective`).
        """
        key = (op, cores.start, cores.stop, nbytes)
        known = self.schedules.get(key)
        if known is not None:
            duration, reservations, link_cycles = known
            if all(self._end(link) <= start for link in reservations):
                for link, intervals in reservations.items():
                    self.busy[link] = _Replayed(start, intervals)
                self.busy_cycles += link_cycles
                return start + duration
            return self._collective(op, cores, nbytes, start)
        links = {link for a, b in self._pairs(op, cores) for link in self.route(a, b)}
        if any(self._end(link) > start for link in links):
            return self._collective(op, cores, nbytes, start)
        for link in links:  # all earlier reservations ended: reset the calendars
            self.busy[link] = []
        cycles = self.busy_cycles
        end = self._collective(op, cores, nbytes, start)
        reservations = {
            link: tuple((begin - start, stop - start) for begin, stop in self.busy[link])
            for link in links
            if self.busy[link]
        }
        self.schedules[key] = (end - start, reservations, self.busy_cycles - cycles)
        return end

    def ring(self, cores: range) -> list[int]:
        """The members of an all-gather in ring order, laid on the topology as a
        topology-aware collective library lays its rings, so that each step's transfers
        are as short as the members allow (every step waits for its longest):

        - a ring network: core order (neighbours);
        - whole rows of a mesh, an even number of rows (or of columns): a Hamiltonian
          cycle, every transfer one hop: the first row west to east, the other rows back
          and forth over every column but the first, and up the first column home (with
          an even number of columns instead, the same transposed);
        - one row, or part of one (or a one-column mesh): even offsets out and odd offsets
          back, at most two hops;
        - otherwise: rows in turn, even rows west to east and odd rows back.

        In core order, a mesh ring would cross each row from its end to the next row's
        start, and close across the whole mesh."""
        members = list(cores)
        if self.sram.noc.topology is NocTopology.RING or len(members) < 3:
            return members
        cols = self.sram.noc.mesh_cols
        first_row, first_col = divmod(members[0], cols)
        rows = int(ceil_div(members[-1] + 1, cols)) - first_row
        if rows == 1 or cols == 1:  # a line
            return members[::2] + members[1::2][::-1]
        whole = first_col == 0 and len(members) == rows * cols
        if whole and (rows % 2 == 0 or cols % 2 == 0):
            grid = [[members[r * cols + c] for c in range(cols)] for r in range(rows)]
            if rows % 2:  # an odd number of rows: walk the transposed grid
                grid = [list(column) for column in zip(*grid)]
            order = list(grid[0])
            for r, row in enumerate(grid[1:]):
                order += row[1:][::-1] if r % 2 == 0 else row[1:]
            return order + [row[0] for row in grid[1:]][::-1]

        def snake(core: int) -> tuple[int, int]:
            row, col = divmod(core, cols)
            return row, col if row % 2 == 0 else -col

        return sorted(members, key=snake)

    def gather_steps(self, cores: range) -> list[list[tuple[int, int]]]:
        """The (sender, receiver) transfers of an all-gather among `cores`, step by step.

        The members form the ring `ring`, used both ways, as a collective library uses a
        ring of full-duplex links: in each step every member sends the block it received
        last (its own first) to the next member and the block it received last from the
        other side to the one before, so each block travels the shorter way round and
        n members gather in floor(n / 2) steps, not n - 1. With an even n the last step
        carries the block opposite each member one way only (it is one block, not two)."""
        members = self.ring(cores)
        count = len(members)
        forward = [(members[j], members[(j + 1) % count]) for j in range(count)]
        both = forward + [(receiver, sender) for sender, receiver in forward]
        return [both if 2 * (step + 1) < count else forward for step in range(count // 2)]

    def _pairs(self, op: SramOp, cores: range) -> list[tuple[int, int]]:
        """The (sender, receiver) pairs of a collective's transfers (see `_collective`)."""
        if op == SramOp.ALLGATHER:
            return [pair for step in self.gather_steps(cores) for pair in step]
        members = list(cores)
        count = len(members)
        pairs, stride = [], 1
        while stride < count:
            pairs += [(members[j + stride], members[j]) for j in range(0, count - stride, 2 * stride)]
            stride *= 2
        return pairs

    def _collective(self, op: SramOp, cores: range, nbytes: int, start: int) -> int:
        """`collective`, transfer by transfer.

        `allgather`: the steps of `gather_steps`, each transfer a block of `nbytes`.
        `reduce`: a binomial tree towards the first core, ceil(log2 len) steps; in step s,
        the core at offset j + 2^s sends to the core at offset j (j a multiple of 2^(s+1)),
        which then adds the contribution (one VCU element-wise pass). A step starts when the
        previous one has completed everywhere."""
        ser = int(noc_cycles(nbytes, self.sram))
        now = start
        if op == SramOp.ALLGATHER:
            for step in self.gather_steps(cores):
                now = max(self.transfer(sender, receiver, ser, now) for sender, receiver in step)
            return now
        members, count = list(cores), len(cores)
        combine = int(reduce_combine_cycles(nbytes, self.sram.vcu))
        stride = 1
        while stride < count:
            ends = [
                self.transfer(members[j + stride], members[j], ser, now)
                for j in range(0, count - stride, 2 * stride)
            ]
            now = max(ends) + combine
            stride *= 2
        return now
