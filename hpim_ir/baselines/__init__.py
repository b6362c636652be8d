"""GPU baselines: an analytic A100 model (roofline per kernel plus launch overheads) with
presets calibrated against published measurements. See `hpim_ir.baselines.gpu` for the model,
`hpim_ir.baselines.presets` for the TOML files and `hpim_ir.baselines.calibration` for the fit.
"""

from hpim_ir.baselines.gpu import PARTS, GpuBaseline, GpuEstimate, GpuSpec, StackSpec
from hpim_ir.baselines.presets import baseline_names, load_baseline

__all__ = [
    "PARTS",
    "GpuBaseline",
    "GpuEstimate",
    "GpuSpec",
    "StackSpec",
    "baseline_names",
    "load_baseline",
]
