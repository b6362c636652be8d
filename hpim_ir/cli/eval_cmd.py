"""`hpim eval paper --out DIR`: the HPIM paper's evaluation grid on this simulator.

Runs every `hpim simulate` of the grid (`hpim_ir.evaluation.EvalPlan`) in a process of its
own with a progress bar (`--jobs N`: N at once; the whole-process wall times then include
waiting for the cores, the CPU times beside them do not), then writes DIR/paper.md (the
paper's figures beside ours, with the deviation and why it differs), DIR/results.json (every
report and wall time) and DIR/*.png.
`--models` narrows the grid (the averages then cover those models only).
"""

import argparse
import shlex
import sys
from pathlib import Path

SUITES = ("paper",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=SUITES, help="the evaluation to run (paper: the HPIM paper's)")
    parser.add_argument("--out", required=True, type=Path, help="directory for paper.md, results.json, *.png")
    parser.add_argument(
        "--models", help="comma-separated models instead of the paper's six (OPT-350M..30B)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="simulations run at once (default 1: wall times as a user sees them alone)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from hpim_ir.errors import HpimError
    from hpim_ir.evaluation import EvalPlan, evaluate, write_results
    from hpim_ir.frontend import load_config

    if args.jobs < 1:
        raise HpimError(f"--jobs {args.jobs}: run at least one simulation at a time")
    plan = EvalPlan()
    if args.models:
        models = tuple(name.strip() for name in args.models.split(",") if name.strip())
        if not models:
            raise HpimError(f"--models {args.models!r}: name at least one model")
        for model in models:  # a bad name fails here, not as a grid of failed runs
            load_config(model)
        plan = EvalPlan(models=models, breakdown_model=models[-1], ablation_model=models[-1])
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HpimError(f"--out {args.out}: cannot create the directory: {error.strerror}") from None
    runs = plan.runs()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("hpim simulate", total=len(runs))

        def advance(done) -> None:
            bar.update(task, advance=1, description=f"hpim simulate: {done.key} done")

        outcomes = evaluate(plan, progress=advance, jobs=args.jobs)
    command = "hpim eval " + shlex.join(
        [args.suite, "--out", str(args.out)]
        + (["--models", args.models] if args.models else [])
        + (["--jobs", str(args.jobs)] if args.jobs != 1 else [])
    )
    for path in write_results(outcomes, plan, args.out, command):
        print(path)
    return 0
