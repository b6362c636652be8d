"""`hpim eval paper`: the plan of runs, the tables (paper beside ours, deviation, why it
differs), the files it writes, and runs that are not available."""

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpim_ir.cli import main
from hpim_ir.errors import HpimError
from hpim_ir.evaluation import (
    PAPER,
    PAPER_MODELS,
    EvalPlan,
    Outcome,
    Run,
    deviation,
    evaluate,
    grid_table,
    prefill_table,
    simulate_in_subprocess,
    weight_bytes,
    write_results,
)

TINY = EvalPlan(
    models=("opt-125m",),
    grid=(8, 4),
    ianus=(8, 4),  # the same runs as the grid: `hpim` against itself must be exactly 1.00x
    breakdown_model="opt-125m",
    breakdown=(8, 4),
    ablation_model="opt-125m",
    ianus_hw="hpim",
    cxl_hw="no-such-design",
)


def simulate_in_process(run: Run, cache: Path) -> Outcome:
    """What `simulate_in_subprocess` does, in this process (fast): the CLI on `run.argv()`."""
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(run.argv())
    seconds = time.perf_counter() - started
    if status != 0:
        return Outcome(run, seconds, error=err.getvalue().strip().removeprefix("hpim simulate: error: "))
    return Outcome(run, seconds, report=json.loads(out.getvalue()))


def test_the_default_plan_is_the_papers_grid() -> None:
    plan = EvalPlan()
    runs = plan.runs()
    assert len(runs) == len(set(runs))
    # The A100 grid comes first, so its whole-process times are measured with a cold cache.
    assert runs[: len(PAPER_MODELS)] == [Run(model, 256, 768) for model in PAPER_MODELS]
    keys = {run.key for run in runs}
    assert "opt-13b@hpim/256+1024" in keys  # the calibration figure
    assert "opt-30b@ianus-like/256+512" in keys and "opt-30b@cxl-pnm-like/256+768" in keys
    assert {"opt-13b@hpim/no-pipeline/256+768", "opt-13b@hpim/serial/256+768",
            "opt-13b@hpim/hbm-only/256+768"} <= keys
    # The grid again with the paper's head mapping.
    assert {f"{model}@hpim/fill-none/256+768" for model in PAPER_MODELS} <= keys
    assert Run("opt-350m", 256, 768, fill_banks="none").argv()[-2:] == ["--fill-banks", "none"]
    # Both GPU baselines are asked of every run; no policy is forced on a design's preset.
    argv = Run("opt-1.3b", 256, 512, hw="ianus-like").argv()
    assert argv.count("--baseline") == 2 and "--policy" not in argv


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    seen = []
    outcomes = evaluate(TINY, simulate_in_process, progress=seen.append)
    assert seen == TINY.runs()
    write_results(outcomes, TINY, out, "hpim eval paper --out DIR (tiny)")
    return out, outcomes


def test_jobs_run_at_once_and_keep_the_plans_order() -> None:
    running, most, seen = [0], [0], []
    lock = threading.Lock()

    def simulate(run: Run, cache: Path) -> Outcome:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return Outcome(run, 0.02, error=f"{run.key} in {cache.name}")

    outcomes = evaluate(TINY, simulate, progress=seen.append, jobs=2)
    runs = TINY.runs()
    assert list(outcomes) == [run.key for run in runs] and sorted(seen, key=runs.index) == runs
    assert all(outcomes[run.key].run == run for run in runs)
    assert len({outcome.error.split(" in ")[1] for outcome in outcomes.values()}) == 1  # one cache
    assert most[0] == 2
    with pytest.raises(HpimError, match="jobs must be at least 1, got 0"):
        evaluate(TINY, simulate, jobs=0)


def test_eval_jobs_below_one_is_one_message(tmp_path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["eval", "paper", "--out", str(tmp_path / "out"), "--jobs", "0"])
    assert status != 0 and "Traceback" not in err.getvalue()
    assert "--jobs 0: run at least one simulation at a time" in err.getvalue()
    assert not (tmp_path / "out").exists()


def test_a_run_in_its_own_process_reports_its_own_cpu_time(tmp_path) -> None:
    outcome = simulate_in_subprocess(Run("opt-125m", 4, 2, hw="no-such-design"), tmp_path)
    assert outcome.report is None and outcome.error.startswith("unknown hardware 'no-such-design'")
    # The child's own usage (os.wait4): positive, and no more than its wall time on the
    # cores it could use.
    assert 0 < outcome.cpu_seconds <= outcome.seconds * (os.cpu_count() or 1)


def test_tiny_grid_writes_markdown_json_and_plots(tiny_results) -> None:
    out, outcomes = tiny_results
    markdown = (out / "paper.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"command", "paper", "tables", "runs"}
    assert set(results["tables"]) == {
        "speedup_a100", "prefill", "pim_designs", "breakdown", "ablation", "mapping"
    }
    assert set(results["runs"]) == {run.key for run in TINY.runs()}
    for table in results["tables"].values():
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    assert results["tables"]["speedup_a100"]["columns"][-1] == "why it differs"
    assert "CALIBRATION FIGURE" in markdown and "hpim eval paper --out DIR (tiny)" in markdown
    for plot in ("speedup_a100.png", "breakdown.png", "ablation.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    # The grid row's speedups are the GPU totals over ours, from the same report.
    report = outcomes[TINY.grid_run("opt-125m").key].report
    a100 = next(b for b in report["baselines"] if b["name"] == "a100")
    row = results["tables"]["speedup_a100"]["values"][0]
    assert row["ours"]["a100"] == pytest.approx(a100["total_ms"] / report["total_ms"])


def test_the_mapping_table_sets_the_papers_head_mapping_beside_ours(tiny_results) -> None:
    # OPT-125M's 12 heads of 64 rows: ours puts each on one channel's 64 banks (Q, K and V
    # at once), the paper's over 5 channels of 13 rows (one GEMV after the other): a
    # slower decode, and its speedup is the GPU's total over that run's.
    out, outcomes = tiny_results
    table = json.loads((out / "results.json").read_text())["tables"]["mapping"]
    row = table["values"][0]
    mapped = outcomes[TINY.grid_run("opt-125m", fill_banks="none").key].report
    ours = outcomes[TINY.grid_run("opt-125m").key].report
    assert row["decode_ms_per_token"] == {"paper_mapping": mapped["decode_ms_per_token"],
                                          "ours": ours["decode_ms_per_token"]}
    assert mapped["decode_ms_per_token"] > ours["decode_ms_per_token"]
    a100 = next(b for b in mapped["baselines"] if b["name"] == "a100")
    assert row["paper_mapping"]["a100"] == pytest.approx(a100["total_ms"] / mapped["total_ms"])
    assert [r[0] for r in table["rows"]] == ["opt-125m", "average of the six", "peak of the six"]


def test_a_design_that_does_not_exist_is_not_available_not_a_number(tiny_results) -> None:
    out, _ = tiny_results
    rows = json.loads((out / "results.json").read_text())["tables"]["pim_designs"]["rows"]
    model_row = rows[0]
    assert model_row[1] == "1.00x"  # `hpim` against itself (TINY.ianus_hw)
    assert model_row[2].startswith("not available: unknown hardware 'no-such-design'")
    assert "ours not available" in rows[-1][2]


def test_breakdown_of_another_model_says_the_papers_figure_is_opt_13b(tiny_results) -> None:
    out, _ = tiny_results
    rows = json.loads((out / "results.json").read_text())["tables"]["breakdown"]["rows"]
    # opt-125m's parts are far below OPT-13B's: every row is > 30% off and says why.
    assert all("opt-13b's" in row[-1] for row in rows[:4])


def _fake_report(model: str, speedup: dict[str, float]) -> dict:
    """A `hpim simulate --json` report whose GPU totals are `speedup` x ours."""
    ours = 1000.0
    return {
        "model": model, "prefill_ms": 100.0, "decode_ms_per_token": 1.0, "total_ms": ours,
        "generate": 900, "tokens_per_s": 900.0,
        "baselines": [
            {"name": name, "total_ms": ours * value, "prefill_ms": 50.0,
             "decode_ms_per_token": value} for name, value in speedup.items()
        ],
    }


def test_why_it_differs_appears_exactly_beyond_thirty_percent() -> None:
    plan = EvalPlan(models=("opt-6.7b", "opt-13b"), breakdown_model="opt-6.7b")
    # OPT-6.7B: paper 3.1x; 3.1 x 1.29 = +29% and 3.1 x 0.71 = -29%: both within 30%.
    # OPT-13B: paper 2.4x; 2.4 x 1.5 = +50% against a100-eager: needs a why.
    speedups = {"opt-6.7b": {"a100": 3.1 * 1.29, "a100-eager": 3.1 * 0.71},
                "opt-13b": {"a100": 2.4, "a100-eager": 2.4 * 1.5}}
    outcomes = {}
    for model, speedup in speedups.items():
        run = plan.grid_run(model)
        outcomes[run.key] = Outcome(run, 1.0, report=_fake_report(model, speedup))
    breakdown = plan.breakdown_run()
    outcomes.setdefault(breakdown.key, Outcome(breakdown, 1.0, error="not run"))
    for model in plan.models:
        run = plan.short_long_run(model)
        outcomes[run.key] = Outcome(run, 1.0, error="not run")
    table = grid_table(outcomes, plan)
    rows = {row[0]: row for row in table.rows}
    assert rows["opt-6.7b"][3] == "+29%" and rows["opt-6.7b"][5] == "-29%"
    assert rows["opt-6.7b"][-1] == ""
    assert rows["opt-13b"][5] == "+50%" and "decode" in rows["opt-13b"][-1]
    # The average of the two a100 speedups: (3.999 + 2.4) / 2 = 3.1995 against 6.2: -48%.
    assert rows["average of the six"][3] == "-48%" and rows["average of the six"][-1]
    assert rows["peak, with prompt 32 / generate 1024 too"][2] == "not available: not run"
    # With the short-input runs: the peak is the largest of all eight, and says where.
    for model, value in (("opt-6.7b", 20.0), ("opt-13b", 1.0)):
        run = plan.short_long_run(model)
        outcomes[run.key] = Outcome(run, 1.0, report=_fake_report(model, {"a100": value, "a100-eager": value}))
    peak = grid_table(outcomes, plan).values[-1]
    assert peak["ours"]["a100"] == pytest.approx(20.0) and peak["where"]["a100"] == "opt-6.7b at 32/1024"


def test_the_prefill_table_implies_the_papers_prefill() -> None:
    plan = EvalPlan(models=("opt-13b",))
    gemm = _fake_report("opt-13b", {"a100": 3.0, "a100-eager": 4.0})  # 3000 and 4000 ms
    steps = {**gemm, "prefill_ms": 400.0, "total_ms": 1300.0}  # the same decode, 900 ms
    outcomes = {}
    for mode, report in (("gemm", gemm), ("steps", steps)):
        run = plan.grid_run("opt-13b", prefill=mode)
        outcomes[run.key] = Outcome(run, 1.0, report=report)
    table = prefill_table(outcomes, plan)
    values = table.values[0]  # then the average and the peak of the one model
    # Paper 2.4x: the A100's 3000 ms / 2.4 = 1250 ms in all, less our 900 ms decode.
    assert values["implied_prefill_ms"]["a100"] == pytest.approx(350.0)
    assert values["implied_prefill_ms"]["a100-eager"] == pytest.approx(4000 / 2.4 - 900)
    # Every weight once per prompt token (256) in 350 ms.
    assert values["per_token_read_tbs"] == pytest.approx(weight_bytes("opt-13b") * 256 / 0.35 / 1e12)
    # OPT-13B's weights: 40 layers x 12 x 5120^2 plus the 50272 x 5120 LM head, FP16.
    assert weight_bytes("opt-13b") == 2 * (40 * 12 * 5120**2 + 50272 * 5120)
    # With steps, 3000 / 1300 = 2.31x against the paper's 2.4x: -4%.
    row = table.rows[0]
    assert row[2] == "2.31x" and row[3] == "-4%" and row[-1] == ""


def test_deviation_is_relative_to_the_paper() -> None:
    assert deviation(3.0, 2.4) == pytest.approx(25.0)
    assert deviation(PAPER["speedup_a100_peak"], PAPER["speedup_a100_peak"]) == 0.0


def test_eval_cli_rejects_an_unwritable_out(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "hpim_ir", "eval", "paper", "--out", str(blocker / "sub")],
        check=False, capture_output=True, text=True,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("hpim eval: error: --out ") and "Traceback" not in done.stderr
