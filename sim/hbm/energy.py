"""Energy of an HBM-PIM run: device commands times the preset's energy per command, plus
background power over the run.

Each command class is charged the preset's `HbmEnergy` figure for one command of one channel
(all of its banks for all-bank commands: `ACT_AB` -> `act_ab`, `PRE_AB` -> `pre_ab`,
`MAC_AB` -> `mac_ab`, `WR_GB` -> `wr_gb`, `RD_OUT` -> `rd_out`, `REF_AB` -> `refresh`; the
normal-mode bursts `RD` / `RDA` -> `rd`, `WR` / `WRA` -> `wr`), controller-issued commands
included. A single-bank `ACT` / `PRE` is one bank's share of the all-bank figure (`act_ab` /
`pre_ab` over the banks of a channel): the presets derive those per bank. Background is
`background_mw` per channel for every channel of the machine over the whole run (1 mW for 1 ns
is 1 pJ). The figures and their sources live in the presets (`docs/hardware.md`).
"""

ENERGY_OF_COMMAND = {
    "ACT_AB": ("act_ab", False),
    "PRE_AB": ("pre_ab", False),
    "REF_AB": ("refresh", False),
    "MAC_AB": ("mac_ab", False),
    "WR_GB": ("wr_gb", False),
    "RD_OUT": ("rd_out", False),
    "ACT": ("act_ab", True),
    "PRE": ("pre_ab", True),
    "RD": ("rd", False),
    "WR": ("wr", False),
    "RDA": ("rd", False),
    "WRA": ("wr", False),
}
"""Command -> (`HbmEnergy` field, whether it is one bank's share of that figure)."""


def energy_report(commands: dict[str, int], ns: float, hbm) -> dict[str, float]:
    """pJ per command class (keyed by command name), `background` and `total`."""
    report = {
        name: commands[name] * getattr(hbm.energy, field) / (hbm.banks_per_channel if share else 1)
        for name, (field, share) in ENERGY_OF_COMMAND.items()
    }
    report["background"] = hbm.energy.background_mw * hbm.total_channels * ns
    report["total"] = sum(report.values())
    return report
