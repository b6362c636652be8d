"""Randomly mutated IR through `hpim-opt -p hpim-lower{hw=hpim}`: every input gives either
a program or one diagnostic, never a traceback nor an internal error (exit status 3)."""

import contextlib
import io
import random

import pytest

from hpim_ir import import_model
from hpim_ir.opt import main

PIPELINE = "hpim-lower{kv-cache=sram max-context=64}"


def _seed_text() -> str:
    return str(import_model("opt-125m"))


MUTATIONS = (
    "delete_line",
    "duplicate_line",
    "swap_lines",
    "change_number",
    "change_type",
    "drop_token",
    "truncate",
)


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    kind = rng.choice(MUTATIONS)
    index = rng.randrange(len(lines))
    if kind == "delete_line":
        del lines[index]
    elif kind == "duplicate_line":
        lines.insert(index, lines[index])
    elif kind == "swap_lines":
        other = rng.randrange(len(lines))
        lines[index], lines[other] = lines[other], lines[index]
    elif kind == "change_number":
        tokens = lines[index].split("x")
        if len(tokens) > 1:
            position = rng.randrange(len(tokens))
            tokens[position] = tokens[position].replace(
                next((c for c in tokens[position] if c.isdigit()), "0"), str(rng.choice([0, 1, 3, 7, 99999]))
            , 1)
        lines[index] = "x".join(tokens)
    elif kind == "change_type":
        lines[index] = lines[index].replace("f16", rng.choice(["f32", "i32", "index", "f16x"]), 1)
    elif kind == "drop_token":
        words = lines[index].split(" ")
        if len(words) > 1:
            del words[rng.randrange(len(words))]
        lines[index] = " ".join(words)
    else:
        return text[: rng.randrange(len(text))]
    return "\n".join(lines) + "\n"


def run_lower(text: str, tmp_path) -> tuple[int, str]:
    path = tmp_path / "input.mlir"
    path.write_text(text)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(path), "-p", PIPELINE])
    return status, stderr.getvalue()


def check(count: int, seed: int, tmp_path) -> None:
    rng = random.Random(seed)
    base = _seed_text()
    failures = []
    for case in range(count):
        text = mutate(base, rng)
        status, stderr = run_lower(text, tmp_path)
        if status not in (0, 1) or "Traceback" in stderr:
            failures.append(f"case {case}: status {status}: {stderr[-400:]}")
    assert not failures, f"{len(failures)} of {count} inputs crashed:\n" + "\n".join(failures[:5])


def test_unmutated_input_lowers(tmp_path) -> None:
    status, stderr = run_lower(_seed_text(), tmp_path)
    assert status == 0, stderr


def test_mutated_inputs_quick(tmp_path) -> None:
    check(20, seed=1, tmp_path=tmp_path)


@pytest.mark.slow
def test_300_mutated_inputs(tmp_path) -> None:
    check(300, seed=2026, tmp_path=tmp_path)
