"""End-to-end simulation of a request: what `hpim simulate` runs.

A request is a prefill of `prompt` tokens, then `generate` decode steps; step `i` has
`prompt + i` tokens in the KV cache (the `%position` of the decode step) and attends over
`prompt + i + 1` keys, as the GPU baselines count them. The decode step is compiled once
(`hpim-lower`, cached on disk by model, hardware and options) and simulated by the central
scheduler at each step's context length. By default a few context lengths are simulated and
the steps between them interpolated (a step's time is piecewise affine in the context: the
attention grows with it, the rest does not); `exact=True` simulates every step. The prefill
is compiled per prompt length (cached the same way) and simulated by the same scheduler
(`compiled_prefill_runs`), or, with `prefill_mode="steps"`, run token by token as decode
steps (`PREFILL_MODES`); `prefill_estimate`, an analytic roofline, is the independent bound
the tests hold the simulated prefill to. Each phase plans its simulations (`Runs`), and one
pool of worker processes runs them all (`measure_all`).

Baselines are named GPU baselines first (`hpim_ir.baselines`), then hardware presets or files:
another PIM design is simulated by this same simulator, with its preset and its policy.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hpim_ir import __version__
from hpim_ir.errors import HpimError
from hpim_ir.frontend import ModelConfig, load_config
from hpim_ir.baselines.gpu import PARTS  # the GPU baselines' parts: compared side by side
from hpim_ir.hardware import Hardware, load_hardware
from hpim_ir.passes.pim_tile_hbm import FILL_BANKS


@dataclass(frozen=True)
class CompileOptions:
    """What the compiled decode step depends on (the cache key)."""

    model: str
    hw: str = "hpim"
    policy: str = "hpim"
    pipeline: bool = True
    granularity: str = "tile"
    kv_cache: str | None = None
    max_context: int = 0  # an SRAM-resident KV cache must hold this many tokens
    fill_banks: str = FILL_BANKS[0]  # which Q/K/V GEMVs fill the banks (`pim-tile-hbm{fill}`)

    def lower_pass(self):
        from hpim_ir.passes.hpim_lower import HpimLowerPass

        return HpimLowerPass(
            hw=self.hw,
            policy=self.policy,
            pipeline=self.pipeline,
            granularity=self.granularity,
            kv_cache=self.kv_cache,
            max_context=self.max_context,
            fill_banks=self.fill_banks,
        )


def cache_dir() -> Path:
    """Where compiled programs are kept: $HPIM_CACHE_DIR, else ~/.cache/hpim."""
    return Path(os.environ.get("HPIM_CACHE_DIR") or Path.home() / ".cache" / "hpim")


def _source_text(spec: str) -> str:
    """The text a model or hardware name stands for (a file's content, else the name), so
    editing a config or TOML file invalidates the cache."""
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    return path.read_text() if path.is_file() else spec


def _compiler_digest() -> str:
    """A digest of hpim's own source (frontend, dialects, passes, and the simulator's
    program model, whose instruction tables and count forms the passes build on), so a
    changed compiler never reuses programs compiled by the old one."""
    import hpim_ir
    from hpim_ir import dialects, passes, sim

    digest = hashlib.sha256(__version__.encode())
    roots = [Path(hpim_ir.__file__).parent / "frontend",
             *map(Path, [*dialects.__path__, *passes.__path__, *sim.__path__])]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(options: CompileOptions, phase: str = "decode", prompt: int = 0) -> str:
    """The compiled program's key: options, the model's text, the machine as loaded (every
    value, so editing a preset or a file it extends invalidates the key, as editing the named
    file does), the compiler's source, and for a prefill its prompt length (a prefill is
    compiled per prompt length)."""
    material = json.dumps(
        {
            "options": asdict(options),
            **({"phase": phase, "prompt": prompt} if phase != "decode" else {}),
            "model": _source_text(options.model),
            "hw": repr(load_hardware(options.hw)),
            "compiler": _compiler_digest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def compile_module(options: CompileOptions, phase: str = "decode", prompt: int = 0):
    """The decode step or the prefill of `prompt` tokens, compiled to an ISA module."""
    from xdsl.context import Context

    from hpim_ir import import_model

    module = import_model(options.model, phase=phase, **({"prompt": prompt} if prompt else {}))
    options.lower_pass().apply(Context(), module)
    return module


def compiled_program(
    options: CompileOptions, phase: str = "decode", prompt: int = 0, use_cache: bool = True
):
    """The decode step or the prefill of `prompt` tokens as the simulator's program
    (`MachineProgram`), and whether it came from the disk cache.

    The cache keeps the program, not the module's text: parsing a compiled prefill back
    costs more than compiling it (OPT-30B at 256 tokens: 21,739 ops whose text xDSL parses in
    7.4 s, against 2.8 s to compile them, in one process). A program is numpy records,
    pickled; the key covers the simulator's source (`cache_key`), so a program is only read
    back by the code that wrote it. An entry that cannot be read is compiled again."""
    import pickle

    from hpim_ir.sim.program import MachineProgram

    path = cache_dir() / f"{cache_key(options, phase, prompt)}.program"
    if use_cache and path.is_file():
        program = _cached_program(path)
        if program is not None:
            return program, True
    name = load_config(options.model).name
    program = MachineProgram.from_module(
        compile_module(options, phase, prompt), source=f"{name} {phase}" if phase != "decode" else name
    )
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            with open(temporary, "wb") as out:
                pickle.dump(program, out, protocol=pickle.HIGHEST_PROTOCOL)
            temporary.replace(path)  # atomic: a concurrent reader never sees half a file
        except OSError as error:
            raise HpimError(f"cannot write the compile cache {path}: {error.strerror}") from None
    return program, False


def _cached_program(path: Path):
    """The program a cache entry holds, or None if the entry cannot be read: cut short,
    overwritten or emptied, unpickling raises whatever its bytes provoke, and the caller
    compiles the program again."""
    import pickle

    from hpim_ir.sim.program import MachineProgram

    try:
        with open(path, "rb") as cached:
            program = pickle.load(cached)
    except Exception:  # noqa: BLE001 - a cache entry is only a shortcut
        return None
    return program if isinstance(program, MachineProgram) else None


def decode_contexts(prompt: int, generate: int) -> np.ndarray:
    """The context length (tokens already cached) of each decode step."""
    return prompt + np.arange(generate)


def sampled_contexts(contexts: np.ndarray, samples: int) -> np.ndarray:
    """At most `samples` contexts spread evenly over the steps, the first and last included."""
    if len(contexts) <= samples:
        return contexts
    picks = np.unique(np.round(np.linspace(0, len(contexts) - 1, samples)).astype(int))
    return contexts[picks]


def interpolate(sampled: np.ndarray, values: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """Per-step values at `contexts` from the simulated `sampled` ones (piecewise linear)."""
    if values.ndim == 1:
        return np.interp(contexts, sampled, values)
    return np.stack([np.interp(contexts, sampled, column) for column in values.T], axis=1)


@dataclass(frozen=True)
class PrefillEstimate:
    """The prefill on SRAM-PIM, modelled analytically from the hardware description (see
    `prefill_estimate`); `parts` in ms."""

    ms: float
    parts: dict[str, float]
    flops: float
    weight_bytes: float


def prefill_estimate(config: ModelConfig, hw: Hardware, prompt: int) -> PrefillEstimate:
    """The prefill runs on SRAM-PIM (the paper's mapping): every projection is a GEMM on the
    cores' TCUs with its weights streamed in from HBM over the link. Each GEMM takes the
    longer of its compute at the TCUs' peak (cores x rows x cols MACs per cycle) and its
    weight stream (bytes over the slower of the link and HBM's external bandwidth); the
    causal attention is 2 x S^2/2 x hidden MACs per layer on the TCUs plus the softmax of
    S^2/2 scores per head at the VCUs' exp rate; the LM head runs for the last token only.

    A bound, not the report's figure: `hpim simulate` simulates the compiled prefill
    (`simulate_prefill`), which can never be faster than this.
    """
    sram = hw.sram
    if sram is None:
        raise HpimError(f"hardware {hw.name!r} has no SRAM-PIM part to run the prefill on")
    clock = sram.clock_mhz * 1e6
    macs_per_s, bytes_per_s = hw.tcu_macs_per_s, hw.weight_stream_gbs * 1e9
    c, s = config, prompt

    def gemm(rows: int, inputs: int, outputs: int) -> tuple[float, float]:
        macs = rows * inputs * outputs
        return max(macs / macs_per_s, inputs * outputs * 2 / bytes_per_s), 2.0 * macs

    per_layer = {
        "qkv": [gemm(s, c.hidden, c.q_width), gemm(s, c.hidden, c.kv_width), gemm(s, c.hidden, c.kv_width)],
        "attention_proj": [gemm(s, c.q_width, c.hidden)],
        "ffn": [gemm(s, c.hidden, c.ffn), gemm(s, c.ffn, c.hidden)]
        + ([gemm(s, c.hidden, c.ffn)] if c.gated_ffn else []),
    }
    parts = {part: c.layers * sum(t for t, _ in items) for part, items in per_layer.items()}
    flops = c.layers * sum(f for items in per_layer.values() for _, f in items)
    scores = s * (s + 1) / 2 * c.heads
    attention_macs = 2 * scores * c.head_dim
    softmax = scores / (sram.cores * sram.vcu.exp_per_cycle * clock)
    parts["attention"] = c.layers * (attention_macs / macs_per_s + softmax)
    head_s, head_flops = gemm(1, c.embed_dim, c.vocab_size)
    parts["other"] = head_s
    flops += c.layers * 2 * attention_macs + head_flops
    parts_ms = {part: parts.get(part, 0.0) * 1e3 for part in PARTS}
    return PrefillEstimate(sum(parts_ms.values()), parts_ms, flops, projection_weight_bytes(config))


def projection_weight_bytes(config: ModelConfig) -> float:
    """FP16 bytes of the weights a token's projections and LM head read: every layer's Q, K,
    V, output and FFN matrices and the LM head (no biases, norms or embeddings)."""
    c = config
    weights = sum(
        inputs * outputs
        for inputs, outputs in [(c.hidden, c.q_width), (c.hidden, c.kv_width), (c.hidden, c.kv_width),
                                (c.q_width, c.hidden), (c.hidden, c.ffn), (c.ffn, c.hidden)]
        + ([(c.hidden, c.ffn)] if c.gated_ffn else [])
    )
    return 2.0 * (c.layers * weights + c.embed_dim * c.vocab_size)


@dataclass(frozen=True)
class StepMeasure:
    """One simulated decode step."""

    ns: float
    hbm_busy_ns: float
    sram_busy_ns: float
    overlap_ns: float
    energy_pj: float
    parts_ns: dict[str, float]
    """Each part's share of the step (they sum to `ns`; see `measure_step`)."""
    spans_ns: dict[str, float]
    """Per part, the time some unit works for it (parts overlap)."""


@dataclass
class SimulationReport:
    """What `hpim simulate` reports (`as_dict` is its `--json`)."""

    model: str
    hw: str
    policy: str
    pipeline: bool
    prompt: int
    generate: int
    batch: int
    prefill_mode: str
    prefill_ms: float
    decode_ms_per_token: float
    total_ms: float
    tokens_per_s: float
    energy_j: float
    breakdown: dict[str, dict[str, float]]
    """Per phase, each part's share of its time (they sum to the phase), in ms; and the
    subsystems' busy times over the decode."""
    spans: dict[str, dict[str, float]]
    """Per phase, the time some unit works for each part (parts overlap), in ms."""
    utilization: dict[str, float]
    exact: bool
    simulated_steps: int
    cached: bool
    baselines: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        report = asdict(self)
        report["baseline"] = self.baselines[0] if self.baselines else None
        return report


@dataclass(frozen=True)
class Runs:
    """Simulations a result needs (`measure_steps`'s (program, context) pairs, or (program,
    context, trace path)) and how their measures, in order, make it: the phases of a
    request plan their runs first, so one pool of workers simulates them all
    (`measure_all`)."""

    runs: list[tuple]
    finish: Callable[[list[StepMeasure]], object]


def measure_all(
    plans: list[Runs], hw: Hardware, workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list:
    """Each plan's result, its runs simulated together with the others' (`measure_steps`,
    in the plans' order: put the longest runs first, the workers take them in order)."""
    measures = measure_steps([run for plan in plans for run in plan.runs], hw, workers, progress)
    results, at = [], 0
    for plan in plans:
        results.append(plan.finish(measures[at : at + len(plan.runs)]))
        at += len(plan.runs)
    return results


def decode_runs(
    options: CompileOptions, prompt: int, generate: int, program, exact: bool = False,
    samples: int = 8, trace: str | None = None,
) -> Runs:
    """The decode steps of a request to simulate, all of them if `exact`, else `samples`
    of them (the last always among them, which writes its Perfetto timeline to `trace`);
    they finish as (the contexts simulated, their measures)."""
    config = load_config(options.model)
    if prompt < 1 or generate < 1:
        raise HpimError(f"prompt ({prompt}) and generate ({generate}) must be at least 1")
    if prompt + generate > config.max_positions:
        raise HpimError(
            f"prompt {prompt} + generate {generate} exceeds {config.name}'s "
            f"{config.max_positions} positions"
        )
    contexts = decode_contexts(prompt, generate)
    chosen = contexts if exact else sampled_contexts(contexts, samples)
    runs = [(program, int(context)) for context in chosen]
    runs[-1] += (trace,)
    return Runs(runs, lambda measures: (chosen, measures))


_FORKED: tuple[list, Hardware] | None = None
"""The runs and the machine of the `measure_steps` in progress, which its forked workers
inherit rather than receive (a compiled prefill pickles to megabytes)."""


def _measure_forked(index: int) -> StepMeasure:
    runs, hw = _FORKED
    return measure_step(runs[index][0], hw, *runs[index][1:])


def measure_steps(
    runs: list[tuple], hw: Hardware, workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[StepMeasure]:
    """`measure_step` of each (program, context[, trace]) of `runs`, in order;
    `progress(done, total)` after each. With `workers` > 1, in that many processes forked
    from this one: a step is simulated the same wherever it runs, so the results are those
    of one process."""
    global _FORKED
    measures: list[StepMeasure] = []

    def done(measure: StepMeasure) -> None:
        measures.append(measure)
        if progress is not None:
            progress(len(measures), len(runs))

    if workers <= 1 or len(runs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for program, *run in runs:
            done(measure_step(program, hw, *run))
        return measures
    _FORKED = (runs, hw)
    try:
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(runs)), mp_context=fork) as pool:
            for measure in pool.map(_measure_forked, range(len(runs))):
                done(measure)
    finally:
        _FORKED = None
    return measures


def available_cores() -> int:
    """The cores this process may run on (`hpim simulate --workers`'s default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_step(program, hw: Hardware, context: int, trace: str | None = None) -> StepMeasure:
    """Simulate one decode step with the central scheduler and attribute its time to the
    parts of the layer (`MachineResult.part_times`): `parts_ns` are the parts' shares of the
    step, which sum to it (`other` takes untagged work and the time no unit works);
    `spans_ns` the time during which some unit works for each part (they overlap). With
    `trace`, the step's Perfetto timeline is written there too."""
    from hpim_ir.sim.scheduler import simulate_machine

    result = simulate_machine(program, hw, context)
    if trace:
        from hpim_ir.sim.trace_events import write_trace_events

        write_trace_events(result, trace)
    times = result.part_times()
    parts = {part: times.share_ns.get(part, 0.0) for part in PARTS}
    parts["other"] += times.idle_ns + sum(
        ns for part, ns in times.share_ns.items() if part not in PARTS
    )
    sram_busy = result.sram_report.busy_ns if result.sram_report is not None else 0.0
    return StepMeasure(
        ns=result.ns,
        hbm_busy_ns=result.hbm_report.busy_ns,
        sram_busy_ns=sram_busy,
        overlap_ns=result.overlap_ns,
        energy_pj=result.energy_pj["total"],
        parts_ns=parts,
        spans_ns={part: times.span_ns.get(part, 0.0) for part in PARTS},
    )


@dataclass(frozen=True)
class PrefillMeasure:
    """The simulated prefill (`measure_prefill`)."""

    ns: float
    energy_pj: float
    parts_ns: dict[str, float]
    """Each part's share (`StepMeasure.parts_ns`)."""
    spans_ns: dict[str, float]
    """Per part, the time some unit works for it (`StepMeasure.spans_ns`)."""


def part_columns(measure: StepMeasure | PrefillMeasure) -> list[float]:
    """A measure's shares and spans (`PARTS` order), as a row of a table of measures."""
    return [measure.parts_ns[p] for p in PARTS] + [measure.spans_ns[p] for p in PARTS]


def parts_of(columns) -> tuple[dict[str, float], dict[str, float]]:
    """`part_columns` back into the shares and the spans, by part."""
    values = [float(v) for v in columns]
    return dict(zip(PARTS, values)), dict(zip(PARTS, values[len(PARTS):]))


def with_layers(program, layers: int):
    """`program` with each repeated section (the decoder layers) run at most `layers` times."""
    from hpim_ir.sim.hbm.program import HbmProgram

    def fewer(section):
        return replace(section, repeat=min(section.repeat, layers)) if section.repeat else section

    hbm = HbmProgram(program.hbm.records, tuple(fewer(s) for s in program.hbm.sections))
    return replace(program, hbm=hbm, sections=tuple(fewer(s) for s in program.sections))


def compiled_prefill_runs(program, layers: int, exact: bool = False) -> Runs:
    """The runs of a compiled prefill, finishing as its `PrefillMeasure`. Unless `exact`,
    with three and with one iteration of each chunk's layer section, extrapolated to
    `layers`: every layer of a chunk does the same work, so after the first each adds about
    the same time. Not exactly: the rows it reads differ, and the first layers' increments
    still change as the two streams' overlap settles (OPT-125M at 64 tokens: 34.80, 34.90,
    35.00, then 35.10 us a layer), so the increment is the mean of the second and third
    layers' (`tests/test_prefill.py` bounds the difference)."""
    if exact or layers <= 3:
        return Runs([(program, 0)], lambda measures: _prefill_measure(measures[0]))

    def extrapolated(measures: list[StepMeasure]) -> PrefillMeasure:
        three, one = (np.array([m.ns, m.energy_pj] + part_columns(m)) for m in measures)
        ns, energy_pj, *columns = one + (three - one) / 2 * (layers - 1)
        return PrefillMeasure(float(ns), float(energy_pj), *parts_of(columns))

    return Runs([(with_layers(program, n), 0) for n in (3, 1)], extrapolated)


def _prefill_measure(step: StepMeasure) -> PrefillMeasure:
    return PrefillMeasure(step.ns, step.energy_pj, step.parts_ns, step.spans_ns)


def measure_prefill(
    program, hw: Hardware, layers: int, exact: bool = False, workers: int = 1
) -> PrefillMeasure:
    """Simulate a compiled prefill with the central scheduler (`compiled_prefill_runs`);
    `workers` as `measure_steps`."""
    return measure_all([compiled_prefill_runs(program, layers, exact)], hw, workers)[0]


PREFILL_MODES = ("gemm", "steps")
"""How `hpim simulate` runs the prompt: `gemm`, the compiled prefill (the paper's mapping:
GEMMs on the SRAM-PIM TCUs, each weight streamed in once per chunk of the prompt); `steps`,
token by token as decode steps (every weight read once per prompt token, by the bank PUs of
HBM-PIM under the `hpim` policy)."""


@dataclass(frozen=True)
class SimulatedPrefill:
    """The prefill `simulate_prefill` simulated, and how (one of `PREFILL_MODES`)."""

    measure: PrefillMeasure
    mode: str


def simulate_prefill(
    options: CompileOptions, prompt: int, hw: Hardware, use_cache: bool = True,
    exact: bool = False, decode_program=None, samples: int = 8, mode: str = "gemm",
    workers: int = 1,
) -> SimulatedPrefill:
    """Simulate the prefill of `prompt` tokens in `mode` (`prefill_runs`); `workers` as
    `measure_steps`."""
    runs = prefill_runs(options, prompt, use_cache, exact, decode_program, samples, mode)
    return measure_all([runs], hw, workers)[0]


def prefill_runs(
    options: CompileOptions, prompt: int, use_cache: bool = True, exact: bool = False,
    decode_program=None, samples: int = 8, mode: str = "gemm",
) -> Runs:
    """The runs of the prefill of `prompt` tokens in `mode` (`PREFILL_MODES`), finishing as
    a `SimulatedPrefill`.

    `gemm` compiles (or loads) the prefill program (`compiled_prefill_runs`). A policy that places
    the prefill's projections on HBM-PIM (`hbm-only`) has no GEMM to run them as, and a
    prefill that fills a KV cache resident in SRAM-PIM is not lowered: such a design
    processes the prompt token by token, as `steps` does (and `hpim run`), so its prefill is
    `prompt` steps of `decode_program` at contexts 0 .. prompt - 1 (the steps' times summed;
    `samples` of them simulated and the rest interpolated unless `exact`)."""
    from hpim_ir.passes.lower_sram_linear import KvCacheInSram, PrefillOnHbm

    if mode not in PREFILL_MODES:
        raise HpimError(f"prefill mode must be one of {', '.join(PREFILL_MODES)}, got {mode!r}")
    if mode == "gemm":
        try:
            program, _ = compiled_program(options, "prefill", prompt, use_cache)
        except (PrefillOnHbm, KvCacheInSram):
            if decode_program is None:
                raise
        else:
            runs = compiled_prefill_runs(program, load_config(options.model).layers, exact)
            return Runs(runs.runs, lambda measures: SimulatedPrefill(runs.finish(measures), "gemm"))
    if decode_program is None:
        raise HpimError("a prefill run as decode steps needs the compiled decode step")
    contexts = np.arange(prompt)
    chosen = contexts if exact else sampled_contexts(contexts, samples)

    def summed(measures: list[StepMeasure]) -> SimulatedPrefill:
        table = np.array([[m.ns, m.energy_pj] + part_columns(m) for m in measures])
        per_step = table if exact else interpolate(chosen.astype(float), table, contexts.astype(float))
        ns, energy_pj, *columns = per_step.sum(axis=0)
        return SimulatedPrefill(PrefillMeasure(float(ns), float(energy_pj), *parts_of(columns)), "steps")

    return Runs([(decode_program, int(ctx)) for ctx in chosen], summed)


def resolve_policy(hw: str, policy: str | None) -> str:
    """`policy` if given, else the machine's own (`policy` in its hardware file), else hpim's."""
    return policy or load_hardware(hw).policy or "hpim"


def _is_gpu_baseline(name: str) -> bool:
    """Whether `name` is a GPU baseline rather than a hardware description: a GPU preset
    name, or a TOML file that reads as a GPU baseline and not as hardware."""
    from hpim_ir.baselines import baseline_names, load_baseline
    from hpim_ir.hardware import preset_names

    if name in baseline_names():
        return True
    if name in preset_names():
        return False
    if not (name.endswith(".toml") or "/" in name):
        raise HpimError(
            f"unknown baseline {name!r}: not a GPU baseline ({', '.join(baseline_names())}) "
            f"nor a hardware preset ({', '.join(preset_names())}) nor a .toml file"
        )
    try:
        load_baseline(name)
        return True
    except HpimError as gpu_error:
        try:
            load_hardware(name)
            return False
        except HpimError as hw_error:
            raise HpimError(
                f"baseline {name}: neither a GPU baseline ({gpu_error}) "
                f"nor a hardware description ({hw_error})"
            ) from None


def _baseline_report(
    name: str,
    gpu: bool,
    config: ModelConfig,
    prompt: int,
    generate: int,
    simulate: Callable[[str], SimulationReport],
) -> dict:
    """The same request on a baseline: a GPU baseline's estimate (`hpim_ir.baselines`), or
    another machine simulated here (`simulate(hw)`, with that machine's own policy)."""
    from hpim_ir.baselines import GpuBaseline

    if not gpu:
        report = simulate(name)
        return {
            "name": name,
            "prefill_ms": report.prefill_ms,
            "decode_ms_per_token": report.decode_ms_per_token,
            "total_ms": report.total_ms,
            "tokens_per_s": report.tokens_per_s,
            "breakdown": report.breakdown,
            "spans": report.spans,
            "policy": report.policy,
        }
    estimate = GpuBaseline(name).estimate(config, prompt, generate)
    return {
        "name": name,
        "prefill_ms": estimate.prefill_ms,
        "decode_ms_per_token": estimate.decode_ms_per_token,
        "total_ms": estimate.total_ms,
        "tokens_per_s": estimate.tokens_per_s,
        "breakdown": estimate.breakdown,
        "decode_breakdown": estimate.decode_breakdown,
    }


def simulate_request(
    options: CompileOptions,
    prompt: int,
    generate: int,
    baselines: list[str],
    exact: bool = False,
    samples: int = 8,
    use_cache: bool = True,
    trace: str | None = None,
    show_progress: bool = False,
    prefill_mode: str = "gemm",
    workers: int = 1,
) -> SimulationReport:
    """Compile (or load) the decode step, simulate the request (the prompt in
    `prefill_mode`, `PREFILL_MODES`), compare with baselines (each machine in its own
    default: the `gemm` prefill where it has one). The prefill's runs and the decode steps
    simulate together in `workers` processes (`measure_all`)."""
    config = load_config(options.model)
    hw = load_hardware(options.hw)
    gpu = {name: _is_gpu_baseline(name) for name in baselines}  # a bad name fails first
    program, cached = compiled_program(options, use_cache=use_cache)

    progress_bar = None
    if show_progress:
        from rich.progress import Progress

        progress_bar = Progress(transient=True)
        progress_bar.start()
        task = progress_bar.add_task("simulating", total=None)

    def progress(done: int, total: int) -> None:
        if progress_bar is not None:
            progress_bar.update(task, completed=done, total=total)

    decode = decode_runs(options, prompt, generate, program, exact, samples, trace)
    first = prefill_runs(options, prompt, use_cache, exact, program, samples, prefill_mode)
    try:
        # The prefill's runs first: its three-layer run is the longest, and a pool's
        # workers take the runs in order.
        simulated, (chosen, measures) = measure_all([first, decode], hw, workers, progress)
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    prefill = simulated.measure
    contexts = decode_contexts(prompt, generate)
    table = np.array(
        [[m.ns, m.hbm_busy_ns, m.sram_busy_ns, m.overlap_ns, m.energy_pj] + part_columns(m)
         for m in measures]
    )
    per_step = interpolate(chosen.astype(float), table, contexts.astype(float)) if not exact else table
    totals = per_step.sum(axis=0)
    decode_ms = totals[0] / 1e6
    prefill_ms = prefill.ns / 1e6
    total_ms = prefill_ms + decode_ms
    decode_parts, decode_spans = parts_of(totals[5:] / 1e6)
    breakdown = {
        "prefill": {part: ns / 1e6 for part, ns in prefill.parts_ns.items()},
        "decode": decode_parts,
        "subsystem": {
            "hbm_busy": totals[1] / 1e6,
            "sram_busy": totals[2] / 1e6,
            "overlap": totals[3] / 1e6,
        },
    }
    utilization = {
        "hbm_busy": totals[1] / totals[0],
        "sram_busy": totals[2] / totals[0],
        "overlap": totals[3] / totals[0],
    }
    report = SimulationReport(
        model=config.name,
        hw=hw.name,
        policy=options.policy,
        pipeline=options.pipeline,
        prompt=prompt,
        generate=generate,
        batch=1,
        prefill_mode=simulated.mode,
        prefill_ms=prefill_ms,
        decode_ms_per_token=decode_ms / generate,
        total_ms=total_ms,
        tokens_per_s=generate / (total_ms / 1e3),
        energy_j=(totals[4] + prefill.energy_pj) * 1e-12,
        breakdown=breakdown,
        spans={
            "prefill": {part: ns / 1e6 for part, ns in prefill.spans_ns.items()},
            "decode": decode_spans,
        },
        utilization=utilization,
        exact=exact,
        simulated_steps=len(measures),
        cached=cached,
    )

    def simulate_baseline(hw: str) -> SimulationReport:
        # The design as designed: its own policy and KV placement, the default pipeline.
        baseline = CompileOptions(
            options.model, hw, resolve_policy(hw, None), max_context=options.max_context
        )
        return simulate_request(
            baseline, prompt, generate, [], exact, samples, use_cache, workers=workers
        )

    report.baselines = [
        _baseline_report(name, gpu[name], config, prompt, generate, simulate_baseline)
        for name in baselines
    ]
    return report
