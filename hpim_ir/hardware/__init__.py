"""Hardware descriptions: the machine the compiler targets and the simulator times.

A description is a TOML file, validated on load (`load_hardware`), or one of the presets
shipped in `presets/` (`preset_names`): `hbm3-5.2gbps`, `hbm3-6.4gbps` and their `-npc`
(no power constraint) variants, one HBM3 stack each, and `hpim`, the paper's machine.
The schema, the presets and every assumption are documented in `docs/hardware.md`.
"""

from hpim_ir.hardware.config import Hardware, HbmConfig, HbmEnergy, HbmTiming
from hpim_ir.hardware.loader import load_hardware, preset_names
from hpim_ir.hardware.sram import KvPlacement, LinkConfig, NocTopology, SramConfig

__all__ = [
    "Hardware",
    "HbmConfig",
    "HbmEnergy",
    "HbmTiming",
    "KvPlacement",
    "LinkConfig",
    "NocTopology",
    "SramConfig",
    "load_hardware",
    "preset_names",
]
