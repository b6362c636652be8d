"""`hpim simulate`'s pieces: the decode contexts and their sampling, the per-part times,
the analytic prefill, and the compile cache."""

import numpy as np
import pytest

from hpim_ir.errors import HpimError
from hpim_ir.frontend import load_config
from hpim_ir.hardware import load_hardware
from hpim_ir.simulate import (
    CompileOptions,
    cache_key,
    compiled_program,
    decode_contexts,
    decode_runs,
    interpolate,
    measure_step,
    measure_steps,
    prefill_estimate,
    sampled_contexts,
)


def test_decode_contexts_follow_the_position_convention() -> None:
    # Step i of a request with a 4-token prompt has 4 + i tokens cached.
    assert decode_contexts(4, 3).tolist() == [4, 5, 6]


def test_sampling_keeps_both_ends() -> None:
    contexts = decode_contexts(256, 768)
    chosen = sampled_contexts(contexts, 8)
    assert len(chosen) == 8 and chosen[0] == 256 and chosen[-1] == 256 + 767
    assert sampled_contexts(contexts[:5], 8).tolist() == contexts[:5].tolist()


def test_interpolation_is_exact_for_affine_steps() -> None:
    contexts = decode_contexts(10, 50).astype(float)
    exact = 3.0 * contexts + 7.0
    chosen = sampled_contexts(contexts, 4)
    assert np.allclose(interpolate(chosen, 3.0 * chosen + 7.0, contexts), exact)


def test_a_steps_part_shares_sum_to_it_and_its_spans_overlap() -> None:
    hw = load_hardware("hpim")
    program, _ = compiled_program(CompileOptions("opt-125m"), use_cache=False)
    step = measure_step(program, hw, 64)
    assert sum(step.parts_ns.values()) == pytest.approx(step.ns, rel=1e-9)
    # The parts overlap: the pipeline runs one part's work beside another's, so their spans
    # sum to more than the step.
    assert sum(step.spans_ns.values()) > step.ns
    for part, share in step.parts_ns.items():
        assert share <= step.spans_ns[part] + 1e-6 or part == "other"


def test_prefill_estimate_by_hand() -> None:
    hw = load_hardware("hpim")
    config = load_config("opt-125m")
    estimate = prefill_estimate(config, hw, 128)
    # TCU peak: 32 cores x 64 x 64 MACs at 1 GHz; weights over min(link, HBM external).
    macs_per_s = 32 * 64 * 64 * 1e9
    bytes_per_s = min(2662.4, hw.hbm.peak_bandwidth_gbs) * 1e9
    fc1 = max(128 * 768 * 3072 / macs_per_s, 768 * 3072 * 2 / bytes_per_s)
    fc2 = max(128 * 3072 * 768 / macs_per_s, 3072 * 768 * 2 / bytes_per_s)
    assert estimate.parts["ffn"] == pytest.approx(12 * (fc1 + fc2) * 1e3)
    assert estimate.ms == pytest.approx(sum(estimate.parts.values()))


def test_fill_banks_reaches_the_compiled_program() -> None:
    # OPT-125M's 12 heads of 64 rows: spread over 5 channels of 12.8 rows each by default,
    # on 1 channel of 64 rows each with `fill_banks="all"` (Q, K and V side by side on
    # channels 0..35): a different cache entry and a faster step.
    hw = load_hardware("hpim")
    spread, filled = (CompileOptions("opt-125m", fill_banks=fill) for fill in ("gqa", "all"))
    assert cache_key(spread) != cache_key(filled)
    steps = [measure_step(compiled_program(o, use_cache=False)[0], hw, 16).ns for o in (spread, filled)]
    assert steps[1] < steps[0]


def test_request_must_fit_positions() -> None:
    with pytest.raises(HpimError, match="exceeds opt-125m's 2048 positions"):
        decode_runs(CompileOptions("opt-125m"), 2000, 100, program=None)


def test_steps_in_worker_processes_are_the_steps_of_one_process() -> None:
    # Forked workers inherit the programs; a step is simulated the same wherever it runs.
    hw = load_hardware("hpim")
    program, _ = compiled_program(CompileOptions("opt-125m"), use_cache=False)
    runs = [(program, context) for context in (0, 7, 300)]
    seen = []
    assert measure_steps(runs, hw, workers=2, progress=lambda *done: seen.append(done)) == [
        measure_step(program, hw, context) for _, context in runs
    ]
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_trace_is_the_last_steps_written_where_it_is_simulated(
    tmp_path, monkeypatch, workers: int
) -> None:
    # `hpim simulate --trace`: the Perfetto timeline of the last decode step (4 + 2 tokens
    # cached), written by whichever process simulates that step (not simulated again).
    import json

    from hpim_ir.cli import main
    from hpim_ir.sim.scheduler import simulate_machine
    from hpim_ir.sim.trace_events import trace_events

    monkeypatch.setenv("HPIM_CACHE_DIR", str(tmp_path / "cache"))
    trace = tmp_path / "last.json"
    argv = ["simulate", "opt-125m", "--prompt", "4", "--generate", "3", "--json",
            "--workers", str(workers), "--trace", str(trace)]
    assert main(argv) == 0
    program, _ = compiled_program(CompileOptions("opt-125m"), use_cache=False)
    expected = trace_events(simulate_machine(program, load_hardware("hpim"), 6))
    assert json.loads(trace.read_text()) == json.loads(json.dumps(expected))


def test_compile_cache_hit_and_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HPIM_CACHE_DIR", str(tmp_path))
    options = CompileOptions("opt-125m", kv_cache="sram", max_context=64)
    first, cached = compiled_program(options)
    assert not cached and len(list(tmp_path.glob("*.program"))) == 1
    second, cached = compiled_program(options)
    assert cached
    assert first.sections == second.sections and first.source == second.source == "opt-125m"
    assert np.array_equal(first.hbm.records, second.hbm.records)
    assert np.array_equal(first.sram.records, second.sram.records)
    assert measure_step(first, load_hardware("hpim"), 40) == measure_step(second, load_hardware("hpim"), 40)
    # A damaged entry (cut short, overwritten, emptied) is compiled again and replaced, not
    # an error.
    entry = next(tmp_path.glob("*.program"))
    for damaged in (entry.read_bytes()[:100], b"garbage\n", b""):
        entry.write_bytes(damaged)
        third, cached = compiled_program(options)
        assert not cached and np.array_equal(third.sram.records, first.sram.records)
        assert compiled_program(options)[1]
    assert cache_key(options) != cache_key(CompileOptions("opt-125m", kv_cache="hbm"))
    assert cache_key(options) != cache_key(CompileOptions("opt-125m", kv_cache="sram", max_context=65))


def test_cache_key_follows_the_machine_not_its_name(tmp_path) -> None:
    # A file that extends another: editing the file it extends changes the key (the key holds
    # the machine as loaded, not the named file's text).
    base, child = tmp_path / "base.toml", tmp_path / "child.toml"
    base.write_text('extends = "hpim"\n')
    child.write_text('extends = "base.toml"\n')
    key = cache_key(CompileOptions("opt-125m", hw=str(child)))
    assert key == cache_key(CompileOptions("opt-125m", hw=str(child)))
    base.write_text('extends = "hpim"\n[hbm]\nrows = 16384\n')
    assert cache_key(CompileOptions("opt-125m", hw=str(child))) != key
