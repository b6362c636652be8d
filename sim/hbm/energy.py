"""Energy of an HBM-PIM run: device commands times the preset's energy per command, plus
background power over the run.

Each command class is charged the preset's `HbmEnergy` figure for one command of one channel
(all of its banks for all-bank commands: `ACT_AB` -> `act_ab`, `PRE_AB` -> `pre_ab`,
`MAC_AB` -> `mac_ab`, `WR_GB` -> `wr_gb`, `RD_OUT` -> `rd_out`, `REF_AB` -> `refresh`),
controller-issued commands included. Background is `background_mw` per channel for every
channel of the machine over the whole run (1 mW for 1 ns is 1 pJ). The figures and their
sources live in the presets (`docs/hardware.md`).
"""

ENERGY_OF_COMMAND = {
    "ACT_AB": "act_ab",
    "PRE_AB": "pre_ab",
    "REF_AB": "refresh",
    "MAC_AB": "mac_ab",
    "WR_GB": "wr_gb",
    "RD_OUT": "rd_out",
}


def energy_report(commands: dict[str, int], ns: float, hbm) -> dict[str, float]:
    """pJ per command class (keyed by command name), `background` and `total`."""
    report = {
        name: commands[name] * getattr(hbm.energy, field)
        for name, field in ENERGY_OF_COMMAND.items()
    }
    report["background"] = hbm.energy.background_mw * hbm.total_channels * ns
    report["total"] = sum(report.values())
    return report
