"""Calibration of the GPU baselines against published measurements.

`sources.toml` holds measured A100 latencies (source, model, request, figure); its
`[calibrate]` table names, per baseline, the parameters the fit may change. `fit(name)`
searches the efficiencies on a grid (step `GRID_STEP`) and, for each grid point, solves the
overheads (`kernel_us`, `step_us`, non-negative) in closed form: a request's time is linear in
them, `roofline(efficiencies) + launches * kernel_us + forward passes * step_us`. The
objective is the sum of squared relative errors over the baseline's sources. The presets
carry the fitted values (rounded as `fit` rounds them); the tests check that they are what
`fit` returns and that every source is reproduced within the documented error.

    python -m hpim_ir.baselines.calibration [BASELINE ...]

prints the fitted parameters and the table in docs/baselines.md.
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from itertools import combinations

import numpy as np

from hpim_ir.baselines.gpu import GpuSpec, PhaseWork, phase_work
from hpim_ir.baselines.presets import load_baseline
from hpim_ir.errors import HpimError, run_guarded
from hpim_ir.frontend.config import ModelConfig, config_from_dict, load_config

GRID_STEP = 0.005
UNITS = ("ms", "first_token_ms", "tokens/s")
_OVERHEADS = ("overhead.kernel_us", "overhead.step_us")
_EFFICIENCIES = ("efficiency.bandwidth", "efficiency.compute")


@dataclass(frozen=True)
class Source:
    """One published measurement: a request (`prompt`, then `decode_steps` decode steps) of
    `config` at batch 1 and the `measured` figure in `unit` (see sources.toml)."""

    id: str
    baseline: str
    title: str
    url: str
    part: str
    config: ModelConfig
    prompt: int
    decode_steps: int
    unit: str
    measured: float
    tokens: int
    note: str

    @property
    def measured_ms(self) -> float:
        return self.tokens / self.measured * 1e3 if self.unit == "tokens/s" else self.measured

    def in_unit(self, ms: float) -> float:
        """A request time in milliseconds, expressed in the source's unit."""
        return self.tokens / ms * 1e3 if self.unit == "tokens/s" else ms


def load_sources(baseline: str | None = None) -> list[Source]:
    """The sources in sources.toml, or those calibrating `baseline`."""
    table = _sources_file()
    sources = []
    for number, entry in enumerate(table.get("source", []), 1):
        for key in ("id", "baseline", "title", "url", "part", "prompt", "decode_steps", "unit",
                    "measured", *(("name",) if "config" in entry else ("model",))):
            if key not in entry:
                raise HpimError(f"sources.toml: source {number}: key '{key}' is missing")
        if "config" in entry:
            config = config_from_dict(entry["config"], entry["name"], f"source {entry['id']}")
        else:
            config = load_config(entry["model"])
        if entry["unit"] not in UNITS:
            raise HpimError(f"source {entry['id']}: unit {entry['unit']!r} is not one of {UNITS}")
        sources.append(
            Source(
                id=entry["id"],
                baseline=entry["baseline"],
                title=entry["title"],
                url=entry["url"],
                part=entry["part"],
                config=config,
                prompt=entry["prompt"],
                decode_steps=entry["decode_steps"],
                unit=entry["unit"],
                measured=float(entry["measured"]),
                tokens=entry.get("tokens", entry["decode_steps"]),
                note=entry.get("note", ""),
            )
        )
    return [s for s in sources if baseline is None or s.baseline == baseline]


def calibrated_parameters(baseline: str) -> tuple[str, ...]:
    """The preset keys `fit` adjusts for `baseline`."""
    free = _sources_file().get("calibrate", {}).get(baseline)
    if free is None:
        raise HpimError(f"no calibration for GPU baseline {baseline!r} in sources.toml")
    return tuple(free)


def request_work(source: Source, spec: GpuSpec) -> list[PhaseWork]:
    """The prefill and decode work of a source's request under `spec`'s software stack."""
    config, prompt, steps = source.config, source.prompt, source.decode_steps
    work = [phase_work(config, spec.stack, prompt, np.zeros(1, dtype=np.int64), 1)]
    if steps:
        work.append(phase_work(config, spec.stack, 1, np.arange(prompt, prompt + steps), 1))
    return work


def request_ms(source: Source, spec: GpuSpec) -> float:
    """The model's time for a source's request, in milliseconds."""
    return sum(sum(work.price(spec).values()) for work in request_work(source, spec))


@dataclass(frozen=True)
class Fit:
    """A fitted baseline and, per source, (measured, predicted) in the source's unit."""

    spec: GpuSpec
    rows: list[tuple[Source, float, float]]

    def errors(self) -> np.ndarray:
        """Relative error of the predicted time per source (positive: the model is slower)."""
        return np.array([request_ms(s, self.spec) / s.measured_ms - 1 for s, _, _ in self.rows])


def fit(baseline: str) -> Fit:
    """Fit `baseline`'s free parameters to its sources (see the module docstring)."""
    base = load_baseline(baseline)
    free = calibrated_parameters(baseline)
    sources = load_sources(baseline)
    if not sources:
        raise HpimError(f"no sources calibrate GPU baseline {baseline!r}")
    measured = np.array([s.measured_ms for s in sources])
    launches = np.zeros(len(sources))
    passes = np.array([1.0 + s.decode_steps for s in sources])
    terms = []  # per source: (launches per row, memory ms per row at efficiency 1, compute ms)
    for i, source in enumerate(sources):
        works = request_work(source, base)
        rows = np.concatenate([[w.launches, w.bytes, w.flops] for w in works], axis=1)
        unique, inverse = np.unique(rows[1:], axis=1, return_inverse=True)
        weights = np.bincount(inverse.ravel(), weights=rows[0])
        launches[i] = rows[0].sum()
        terms.append(
            (weights, unique[0] / (base.bandwidth_gb_s * 1e6), unique[1] / (base.fp16_tflops * 1e9))
        )

    grid = np.round(np.arange(0.30, 1.0 + GRID_STEP / 2, GRID_STEP), 3)
    bandwidths = grid if "efficiency.bandwidth" in free else [base.bandwidth_efficiency]
    computes = grid if "efficiency.compute" in free else [base.compute_efficiency]
    fixed = {"overhead.kernel_us": base.kernel_us, "overhead.step_us": base.step_us}
    columns = {"overhead.kernel_us": launches * 1e-3, "overhead.step_us": passes * 1e-3}
    best: tuple[float, float, float, dict[str, float]] | None = None
    for bandwidth in bandwidths:
        for compute in computes:
            roofline = np.array(
                [(w * np.maximum(m / bandwidth, c / compute)).sum() for w, m, c in terms]
            )
            residual = roofline + sum(
                columns[key] * fixed[key] for key in _OVERHEADS if key not in free
            )
            cost, overheads = _overheads([columns[k] for k in _OVERHEADS if k in free],
                                         residual, measured)
            if best is None or cost < best[0]:
                chosen = dict(zip([k for k in _OVERHEADS if k in free], overheads))
                best = (cost, bandwidth, compute, chosen)
    assert best is not None
    _, bandwidth, compute, overheads = best
    values = {**fixed, **overheads}
    spec = dataclasses.replace(
        base,
        bandwidth_efficiency=float(bandwidth),
        compute_efficiency=float(compute),
        kernel_us=round(values["overhead.kernel_us"], 1),
        step_us=round(values["overhead.step_us"]),
    )
    rows = [(s, s.measured, s.in_unit(request_ms(s, spec))) for s in sources]
    return Fit(spec, rows)


def _overheads(
    columns: list[np.ndarray], residual: np.ndarray, measured: np.ndarray
) -> tuple[float, list[float]]:
    """Non-negative x minimising sum(((residual + columns @ x) / measured - 1)^2): the best
    unconstrained least-squares solution over every subset of the columns held at zero."""
    target = 1.0 - residual / measured
    best: tuple[float, list[float]] = (float(np.sum(target**2)), [0.0] * len(columns))
    for size in range(1, len(columns) + 1):
        for subset in combinations(range(len(columns)), size):
            matrix = np.stack([columns[j] / measured for j in subset], axis=1)
            solution = np.linalg.lstsq(matrix, target, rcond=None)[0]
            if (solution < 0).any():
                continue
            cost = float(np.sum((matrix @ solution - target) ** 2))
            if cost < best[0]:
                values = [0.0] * len(columns)
                for j, value in zip(subset, solution):
                    values[j] = float(value)
                best = (cost, values)
    return best


def table(result: Fit) -> str:
    """The calibration table of one baseline, as markdown."""
    spec = result.spec
    lines = [
        f"`{spec.name}`: bandwidth efficiency {spec.bandwidth_efficiency:.3f}, compute "
        f"efficiency {spec.compute_efficiency:.3f}, kernel overhead {spec.kernel_us:.1f} us, "
        f"step overhead {spec.step_us:.0f} us",
        "",
        "| source | model | request (prompt + decode steps) | unit | measured | ours | error |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for (source, measured, ours), error in zip(result.rows, result.errors()):
        lines.append(
            f"| [{source.id}]({source.url}) | {source.config.name} | "
            f"{source.prompt} + {source.decode_steps} | {source.unit} | {measured:g} | "
            f"{ours:.4g} | {error:+.1%} |"
        )
    errors = np.abs(result.errors())
    lines.append("")
    lines.append(f"Time error: mean |e| {errors.mean():.1%}, max |e| {errors.max():.1%}.")
    return "\n".join(lines)


def _sources_file() -> dict:
    text = (resources.files("hpim_ir.baselines") / "sources.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        names = (argv if argv is not None else sys.argv[1:]) or list(_sources_file()["calibrate"])
        for name in names:
            print(table(fit(name)))
            print()
        return 0

    return run_guarded("python -m hpim_ir.baselines.calibration", body)


if __name__ == "__main__":
    sys.exit(main())
