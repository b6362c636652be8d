"""Normal-mode (non-PIM) access: bank numbers, and the raw sequence of `hbm.read` / `hbm.write`.

**Banks.** A channel has `pseudo_channels x ranks x bank_groups x banks_per_group` banks.
Bank number B of a channel (the `bank=` field of `hbm.act`, `hbm.rd`, ...) is

    B = ((pseudo_channel * ranks + rank) * bank_groups + bank_group) * banks_per_group + bank

**The read / write macros.** `hbm.read ch=C row=R rows=N cols=K` reads columns 0..K-1 of rows
R..R+N-1 of every bank of channel C, which is the data a `hbm.gemv` with the same fields
multiplies; `hbm.write` writes it. The order is the one a controller uses for peak bandwidth:

- A *lane* is a (pseudo-channel, bank group) pair, lane j = bank_group * pseudo_channels +
  pseudo_channel; a *set* is a (rank, bank in group) pair, set s = bank * ranks + rank. Bank
  (s, j) is the bank of set s in lane j. Consecutive bursts go round-robin over the lanes, so
  each pseudo-channel's data bus sees a burst every `pseudo_channels` cycles, each to another
  bank group (paced by nCCD_S, not nCCD_L), and the two pseudo-channels share the column bus.
- The data is read in *passes*: for each row r of R..R+N-1, for each set s: one pass reads
  row r of the set's banks, round k (k = 0..K-1) being column k of every lane in lane order.
  The last round uses RDA (WRA): each bank closes itself as soon as its last read allows.
- Row activations overlap the bursts: during a pass, the banks of the next pass (the next set;
  after the last set, set 0 of the next row) are activated, the ACT of lane j right after
  round min(j, K-1). The first pass activates its banks before its first round, and so does
  every pass when a channel has a single set (its banks are still in use while it runs).

So a pass on a 2-pseudo-channel, 4-bank-group channel with K = 2, not the macro's first or last,
is: `RD (s, 0) k=0`, `RD (s, 1) k=0`, ..., `RD (s, 7) k=0`, `ACT (s+1, 0)`, `RDA (s, 0) k=1`,
..., `RDA (s, 7) k=1`, `ACT (s+1, 1)`, ..., `ACT (s+1, 7)`. `stream_passes` and
`pass_commands` are that definition; both engines simulate exactly these commands (the fast
one without re-simulating passes it has already seen in the same state).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from hpim_ir.sim.hbm.timing import Cmd


@dataclass(frozen=True)
class BankGeometry:
    """The bank organization of one channel."""

    pseudo_channels: int
    ranks: int
    bank_groups: int
    banks_per_group: int

    @staticmethod
    def of(hbm) -> "BankGeometry":
        return BankGeometry(hbm.pseudo_channels, hbm.ranks, hbm.bank_groups, hbm.banks_per_group)

    @property
    def banks(self) -> int:
        return self.pseudo_channels * self.ranks * self.bank_groups * self.banks_per_group

    @property
    def lanes(self) -> int:
        """(pseudo-channel, bank group) pairs: the banks one round of a pass reads."""
        return self.pseudo_channels * self.bank_groups

    @property
    def sets(self) -> int:
        """(rank, bank in group) pairs: the passes one row takes."""
        return self.ranks * self.banks_per_group

    def address(self, bank: int) -> tuple[int, int, int, int]:
        """(pseudo-channel, rank, bank group, bank in group) of bank number `bank`."""
        rest, in_group = divmod(bank, self.banks_per_group)
        rest, group = divmod(rest, self.bank_groups)
        pseudo_channel, rank = divmod(rest, self.ranks)
        return pseudo_channel, rank, group, in_group

    def number(self, pseudo_channel: int, rank: int, group: int, in_group: int) -> int:
        """The bank number of an address (the inverse of `address`)."""
        return (
            (pseudo_channel * self.ranks + rank) * self.bank_groups + group
        ) * self.banks_per_group + in_group

    def bank(self, set_: int, lane: int) -> int:
        """The bank of set `set_` in lane `lane`."""
        in_group, rank = divmod(set_, self.ranks)
        group, pseudo_channel = divmod(lane, self.pseudo_channels)
        return self.number(pseudo_channel, rank, group, in_group)


class PassShape(NamedTuple):
    """What one pass does, rows counted from the pass's own row."""

    write: bool
    cols: int
    set: int
    upfront: bool
    """The pass activates its own banks before its first round."""
    next_set: int
    """The set whose banks it activates ahead for the next pass, or -1."""
    next_row: int
    """The next pass's row, relative to this pass's (0 or 1)."""


def stream_passes(
    geometry: BankGeometry, write: bool, row: int, rows: int, cols: int
) -> Iterator[tuple[int, PassShape]]:
    """The passes of `hbm.read` (`write`: `hbm.write`) row=`row` rows=`rows` cols=`cols`
    on one channel, in order: (the pass's row, its shape)."""
    sets = geometry.sets
    count = rows * sets
    for p in range(count):
        r, s = divmod(p, sets)
        ahead = p + 1 < count and sets > 1
        yield row + r, PassShape(
            write,
            cols,
            s,
            p == 0 or sets == 1,
            (p + 1) % sets if ahead else -1,
            (p + 1) // sets - r if ahead else 0,
        )


@cache
def pass_commands(
    geometry: BankGeometry, shape: PassShape
) -> tuple[tuple[Cmd, int, int, int], ...]:
    """The raw commands of one pass: (command, bank, row relative to the pass's, column)."""
    lanes = range(geometry.lanes)
    burst, last_burst = (Cmd.WR, Cmd.WRA) if shape.write else (Cmd.RD, Cmd.RDA)
    commands: list[tuple[Cmd, int, int, int]] = []
    if shape.upfront:
        commands += [(Cmd.ACT, geometry.bank(shape.set, j), 0, -1) for j in lanes]
    for k in range(shape.cols):
        kind = last_burst if k == shape.cols - 1 else burst
        commands += [(kind, geometry.bank(shape.set, j), 0, k) for j in lanes]
        if shape.next_set >= 0:
            commands += [
                (Cmd.ACT, geometry.bank(shape.next_set, j), shape.next_row, -1)
                for j in lanes
                if min(j, shape.cols - 1) == k
            ]
    return tuple(commands)
