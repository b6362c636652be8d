"""The hardware description as the compiler and the simulator see it: frozen dataclasses.

A `Hardware` is one machine. Its `hbm` part (`HbmConfig`) is the HBM-PIM subsystem: the
organization of the stacks, the JEDEC timing table (`HbmTiming`, in cycles of the command
clock) and the energy per command (`HbmEnergy`). The SRAM-PIM subsystem and the link between
the two get their own dataclasses beside `HbmConfig` (`Hardware.sram`, `Hardware.link`).

Each field's metadata is the schema the loader validates against (`hpim_ir.hardware.loader`):
its unit, the smallest allowed value, whether the address mapping needs a power of two, and
whether a cycle count may be given in nanoseconds instead. Instances are only ever built from
fully validated values, so every `Hardware` is a consistent machine.
"""

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a runtime import would be circular: sram.py builds on this module
    from hpim_ir.hardware.sram import LinkConfig, SramConfig


# Upper bounds far beyond any real device, so that a typo (an exponent too many) is an error
# rather than a simulation that overflows int64 or runs for hours (the engines simulate idle
# time refresh by refresh, and keep state per channel and per bank).
MAX_CYCLES = 2**20
"""A latency or timing in cycles: 1 ms at 1 GHz, 200 times the longest JEDEC timing (tREFI,
about 5,000 cycles of an HBM3 command clock)."""
MAX_DATA_RATE_GBPS = 100.0
"""Gb/s per pin: 2.5 times the fastest DRAM signalling (GDDR7, about 40 Gb/s)."""
MAX_CLOCK_MHZ = 100_000.0
"""MHz: a 100 GHz core clock, 20 times any CMOS processor's."""
MAX_LINK_GBS = 1_000_000.0
"""GB/s: 1 PB/s between the subsystems, 100 times the aggregate HBM bandwidth of any chip."""
MAX_CHANNELS = 2**12
"""HBM-PIM channels in all stacks: 64 times the paper's 64."""
MAX_BANKS = 2**12
"""Banks per channel: 64 times HBM3's 64."""


def spec(
    doc: str,
    unit: str,
    *,
    minimum: float = 1,
    maximum: float | None = None,
    power_of_two: bool = False,
    cycles: bool = False,
    derived: bool = False,
) -> Any:
    """A dataclass field carrying its schema: `minimum` and `maximum` (inclusive; no maximum
    if None), `power_of_two` (the address mapping slices it as a bit field), `cycles` (a
    timing that may also be given as `t<NAME>_ns`), `derived` (computed by the loader, not a
    TOML key)."""
    return field(
        metadata={
            "doc": doc,
            "unit": unit,
            "minimum": minimum,
            "maximum": maximum,
            "power_of_two": power_of_two,
            "cycles": cycles,
            "derived": derived,
        }
    )


def range_problem(value: float, meta: Any) -> str | None:
    """Why the number `value` is outside its field's [minimum, maximum] (None: it is inside),
    for the loaders' messages."""
    if value < meta["minimum"]:
        return f"must be at least {meta['minimum']} ({meta['unit']})"
    if meta["maximum"] is not None and value > meta["maximum"]:
        limit = meta["maximum"]
        return f"must be at most {int(limit) if limit == int(limit) else limit:,} ({meta['unit']})"
    return None


def number_problem(value: Any) -> str | None:
    """Why `value` cannot be the value of a number key (None: it can): it must be a finite
    number that FP64 holds exactly (an integer beyond 2**53 would be silently rounded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "must be a finite number"
    if float(value) != value:
        return "has no exact FP64 value (an integer beyond 2**53)"
    return None


def choice_problem(kind: type[Enum], value: Any) -> str | None:
    """Why `value` is not one of the values of `kind` (None: it is one), for the loaders'
    messages about a choice key."""
    allowed = [member.value for member in kind]
    return None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}"


def timing(doc: str) -> Any:
    return spec(doc, "cycles", maximum=MAX_CYCLES, cycles=True)


def energy(doc: str, unit: str = "pJ") -> Any:
    return spec(doc, unit, minimum=0)


@dataclass(frozen=True)
class HbmTiming:
    """JEDEC HBM3 timing plus the all-bank PIM pacing, in cycles of the command clock
    (`tCK_ns` each). Names follow Ramulator 2.0 / AttAcc (`nCCDAB`, `nRRDS`, ...)."""

    nBL: int = timing("burst length on the data bus (BL8 at 4 beats per clock: 2)")
    nCL: int = timing("read latency: column read command to first data")
    nCWL: int = timing("write latency: column write command to first data")
    nRCD: int = timing("ACT to the first column command (RD, WR, MAC) of the row")
    nRP: int = timing("PRE to the next ACT of the bank")
    nRAS: int = timing("ACT to PRE of the same bank")
    nRC: int = timing("ACT to ACT of the same bank")
    nWR: int = timing("write recovery: end of write data to PRE")
    nRTP: int = timing("column read (or MAC) to PRE; tRTP_L: all-bank reads span every bank group")
    nCCDS: int = timing("column to column command, different bank groups")
    nCCDL: int = timing("column to column command, same bank group")
    nCCDAB: int = timing("MAC_AB to MAC_AB on a channel (power-constrained PIM pacing)")
    nCCDSB: int = timing("MAC_SB to MAC_SB on a channel (same-bank PIM pacing)")
    nRRDS: int = timing("ACT to ACT, different bank groups")
    nRRDL: int = timing("ACT to ACT, same bank group")
    nFAW: int = timing("window in which at most four ACTs may issue")
    nWTRS: int = timing("end of write data to a read command, different bank groups")
    nWTRL: int = timing("end of write data to a read command, same bank group")
    nRTW: int = timing("read to write data-bus turnaround")
    nREFI: int = timing("all-bank refresh interval (REFab every nREFI)")
    nRFC: int = timing("all-bank refresh cycle time (REFab to the next ACT)")
    tCK_ns: float = spec(
        "command clock period: 4 / data_rate_gbps (4 data beats per clock)", "ns", derived=True
    )


@dataclass(frozen=True)
class HbmEnergy:
    """Energy per command of one channel (all of its banks for all-bank commands), plus the
    background power of a channel. Sources and derivations are in the preset files."""

    act_ab: float = energy("ACT_AB: activate one row in every bank of the channel")
    pre_ab: float = energy("PRE_AB: precharge every bank of the channel")
    mac_ab: float = energy("MAC_AB: every bank reads one column, its PU multiply-accumulates it")
    wr_gb: float = energy("WR_GB: one column of input from the host into the global buffer")
    rd_out: float = energy("RD_OUT: one column of results from the PUs to the host")
    rd: float = energy("RD / RDA: one column of one bank's open row to the host (normal mode)")
    wr: float = energy("WR / WRA: one column from the host into one bank's open row")
    refresh: float = energy("REFab: one all-bank refresh of the channel")
    background_mw: float = energy("static (background) power of one channel", "mW")


class Accumulation(str, Enum):
    """The precision a bank PU keeps its partial sums in (what the functional simulator
    rounds them to after every MAC_AB; timing does not depend on it)."""

    FP32 = "fp32"
    """FP32 accumulators: each MAC_AB's FP16 products summed and added in FP32."""
    FP16 = "fp16"
    """FP16 accumulators: the partial sum rounded to FP16 after every MAC_AB."""


@dataclass(frozen=True)
class HbmConfig:
    """The HBM-PIM subsystem: `stacks` HBM3 stacks of `channels` channels each, one
    processing unit (PU) per bank, one global (GEMV input) buffer per channel.

    A channel has `pseudo_channels x ranks x bank_groups x banks_per_group` banks; a bank has
    `rows` rows of `columns` columns of `column_bytes` bytes; one column access (one burst) is
    the unit a MAC_AB multiplies, `column_bytes / 2` FP16 values."""

    stacks: int = spec("HBM stacks", "count")
    channels: int = spec("channels per stack", "count", power_of_two=True)
    pseudo_channels: int = spec("pseudo-channels per channel", "count", power_of_two=True)
    ranks: int = spec("ranks (stack IDs, SID) per pseudo-channel", "count")
    bank_groups: int = spec("bank groups per pseudo-channel and rank", "count", power_of_two=True)
    banks_per_group: int = spec("banks per bank group", "count", power_of_two=True)
    rows: int = spec("rows per bank", "count")
    columns: int = spec("columns per row", "count", power_of_two=True)
    column_bytes: int = spec(
        "bytes per column access (one burst)", "bytes", minimum=2, power_of_two=True
    )
    pu_multipliers: int = spec("FP16 multipliers of each bank's PU", "count")
    pu_accumulate: Accumulation = spec("precision of each bank PU's partial sums", "choice")
    global_buffer_bytes: int = spec("global (GEMV input) buffer per channel", "bytes")
    # The floor keeps tCK (4 / rate) a finite float; HBM1 already ran at 1 Gb/s.
    data_rate_gbps: float = spec(
        "data rate per pin", "Gb/s", minimum=0.1, maximum=MAX_DATA_RATE_GBPS
    )
    timing: HbmTiming = spec("timing table", "")
    energy: HbmEnergy = spec("energy per command", "")

    @property
    def total_channels(self) -> int:
        """Channels of the whole machine (`stacks x channels`)."""
        return self.stacks * self.channels

    @property
    def banks_per_channel(self) -> int:
        """Banks one all-bank command reaches."""
        return self.pseudo_channels * self.ranks * self.bank_groups * self.banks_per_group

    @property
    def total_banks(self) -> int:
        """Banks of the whole machine, which is also its number of PUs (one per bank)."""
        return self.total_channels * self.banks_per_channel

    @property
    def row_bytes(self) -> int:
        """Bytes of one row of one bank (the page size)."""
        return self.columns * self.column_bytes

    @property
    def capacity_bytes(self) -> int:
        """Capacity of the whole machine."""
        return self.total_banks * self.rows * self.row_bytes

    @property
    def global_buffer_slots(self) -> int:
        """Columns of input the global buffer holds (`wr_gb` slots)."""
        return self.global_buffer_bytes // self.column_bytes

    @property
    def tck_ns(self) -> float:
        """Command clock period in ns."""
        return self.timing.tCK_ns

    @property
    def peak_bandwidth_gbs(self) -> float:
        """External bandwidth of the machine in GB/s: every pseudo-channel moves one column
        every nBL cycles."""
        pseudo_channels = self.total_channels * self.pseudo_channels
        return pseudo_channels * self.column_bytes / (self.timing.nBL * self.tck_ns)

    @property
    def peak_pim_bandwidth_gbs(self) -> float:
        """Internal bandwidth of the PUs in GB/s: every bank reads one column per MAC_AB, one
        MAC_AB every nCCDAB cycles on every channel."""
        return self.total_banks * self.column_bytes / (self.timing.nCCDAB * self.tck_ns)

    @property
    def peak_pim_gflops(self) -> float:
        """Peak FP16 throughput of the PUs in GFLOP/s (a multiply-accumulate is 2 FLOPs)."""
        return 2 * self.total_banks * self.pu_multipliers / (self.timing.nCCDAB * self.tck_ns)


@dataclass(frozen=True)
class Hardware:
    """One machine. `sram` and `link` are the SRAM-PIM subsystem and the link between the
    subsystems; their dataclasses come with the SRAM-PIM issue and are `None` until then."""

    name: str
    description: str
    hbm: HbmConfig
    sram: "SramConfig | None" = None
    link: "LinkConfig | None" = None
    source_path: Path | None = None
    policy: str | None = None
    """The partitioning policy (`convert-llm-to-pim`) the machine is designed for, used by
    `hpim compile/simulate --hw` unless `--policy` is given; None: hpim's default."""

    @property
    def tcu_macs_per_s(self) -> float:
        """The SRAM-PIM TCUs' peak multiply-accumulates per second, every core's."""
        sram = self.sram
        return sram.cores * sram.tcu.rows * sram.tcu.cols * sram.clock_mhz * 1e6

    @property
    def weight_stream_gbs(self) -> float:
        """GB/s at which SRAM-PIM can stream weights out of HBM: the slower of the link and
        HBM's external bandwidth."""
        return min(self.link.bandwidth_gbs, self.hbm.peak_bandwidth_gbs)
