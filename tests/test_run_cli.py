"""`hpim run MODEL_DIR --functional`: logits of a saved tiny model computed by its compiled
program, greedy generation, and bad input (one message, exit status 1)."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hpim_ir.cli import main
from hpim_ir.frontend import config_from_dict
from hpim_ir.weights import random_weights, save_model
from tests.reference_model import load_checkpoint, reference_logits
from tests.test_functional_isa import CONFIGS, TOLERANCE

NAME = "opt-pre-ln"
TOKENS = [3, 99, 7, 7, 120, 0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    config = config_from_dict(CONFIGS[NAME], NAME, NAME)
    save_model(path, CONFIGS[NAME], random_weights(config, seed=5, std=0.2))
    return path


def run_json(capsys, folder: Path, *argv: str) -> dict:
    assert main(["run", str(folder), "--functional", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys, argv: list[str], message: str) -> None:
    assert main(["run", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"hpim run: error: {message}"
    assert "Traceback" not in captured.err


def test_logits_match_the_reference(capsys, folder: Path) -> None:
    tokens = ",".join(map(str, TOKENS))
    report = run_json(capsys, folder, "--tokens", tokens, "--prompt-len", "2")
    logits = np.array(report["logits"], dtype=np.float32)
    expected = reference_logits(*load_checkpoint(folder), TOKENS)
    assert report["tokens"] == TOKENS and report["generated"] == []
    assert report["prefill"] == "compiled"  # rows 0 and 1 from the compiled prefill
    assert logits.shape == (len(TOKENS), CONFIGS[NAME]["vocab_size"])
    assert np.abs(logits - expected).max() <= TOLERANCE * np.abs(expected).max()


@pytest.mark.parametrize("policy", ["serial", "hbm-only"])
def test_policy_and_pipeline_options(capsys, folder: Path, policy: str) -> None:
    tokens = ",".join(map(str, TOKENS[:3]))
    plain = run_json(capsys, folder, "--tokens", tokens, "--prompt-len", "1")
    other = run_json(
        capsys,
        folder,
        "--tokens",
        tokens,
        "--prompt-len",
        "1",
        "--policy",
        policy,
        "--no-pipeline",
    )
    a, b = np.array(plain["logits"]), np.array(other["logits"])
    assert np.abs(a - b).max() <= TOLERANCE * np.abs(a).max()


@pytest.mark.parametrize(
    ("options", "prefill"),
    [
        ((), "compiled"),
        (("--no-pipeline",), "compiled"),
        (("--policy", "serial"), "compiled"),
        # HBM-PIM has no GEMM, and the prefill with an SRAM-resident cache is not lowered:
        # the prompt goes through the decode step token by token.
        (("--policy", "hbm-only"), "decode steps"),
        (("--kv-cache", "sram"), "decode steps"),
    ],
)
def test_the_prompt_through_the_compiled_prefill(
    capsys, folder: Path, options: tuple[str, ...], prefill: str
) -> None:
    tokens = ",".join(map(str, TOKENS))
    report = run_json(capsys, folder, "--tokens", tokens, "--prompt-len", "4", *options)
    assert report["prefill"] == prefill
    # A one-token prompt is a decode step (its projections are GEMVs on HBM-PIM).
    one = run_json(capsys, folder, "--tokens", tokens, "--prompt-len", "1", *options)
    assert one["prefill"] == "decode steps"
    logits = np.array(report["logits"], dtype=np.float32)
    expected = reference_logits(*load_checkpoint(folder), TOKENS)
    assert np.abs(logits - expected).max() <= TOLERANCE * np.abs(expected).max()


def test_greedy_generation(capsys, folder: Path) -> None:
    # Each generated token is the argmax of the logits after everything before it: run the
    # given and the generated tokens teacher-forced and compare.
    report = run_json(capsys, folder, "--tokens", "3,99", "--prompt-len", "2", "--generate", "4")
    generated = report["generated"]
    assert len(generated) == 4
    forced = run_json(
        capsys, folder, "--tokens", ",".join(map(str, [3, 99, *generated])), "--prompt-len", "2"
    )
    predictions = np.argmax(np.array(forced["logits"]), axis=1)
    assert predictions[1:5].tolist() == generated


def test_text_output(capsys, folder: Path) -> None:
    assert (
        main(
            [
                "run",
                str(folder),
                "--functional",
                "--tokens",
                "1,2",
                "--prompt-len",
                "2",
                "--generate",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(
        f"{folder.name}: 2 tokens (2 prompt, compiled prefill) on hpim, policy hpim"
    )
    assert "after token   1 (     2): predicts" in out
    assert out.splitlines()[-1].startswith("generated: ")


def test_random_weights_from_a_seed(capsys, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS[NAME]))
    first = run_json(capsys, tmp_path, "--tokens", "1,2", "--prompt-len", "1", "--seed", "3")
    again = run_json(capsys, tmp_path, "--tokens", "1,2", "--prompt-len", "1", "--seed", "3")
    assert first == again
    fails(
        capsys,
        [str(tmp_path), "--functional", "--tokens", "1", "--prompt-len", "1"],
        f"{tmp_path}: no model.safetensors (give --seed S for random weights)",
    )


def test_bad_input(capsys, folder: Path, tmp_path: Path) -> None:
    run = [str(folder), "--functional"]
    fails(
        capsys,
        [str(tmp_path / "nope"), "--functional", "--tokens", "1", "--prompt-len", "1"],
        f"{tmp_path / 'nope'}: no such model folder",
    )
    fails(
        capsys,
        [*run, "--tokens", "1,128", "--prompt-len", "1"],
        "--tokens: token id 128 is outside the vocabulary (0..127)",
    )
    fails(
        capsys,
        [*run, "--tokens", "1,x", "--prompt-len", "1"],
        "--tokens must be comma-separated integers, got '1,x'",
    )
    fails(
        capsys,
        [*run, "--tokens", "1,2", "--prompt-len", "3"],
        "--prompt-len 3 must be between 1 and the 2 tokens given",
    )
    fails(
        capsys,
        [*run, "--tokens", "1", "--prompt-len", "1", "--generate", "40"],
        "41 tokens exceed the model's 32 positions",
    )
    fails(
        capsys,
        [str(folder), "--tokens", "1", "--prompt-len", "1"],
        "hpim run computes values with --functional (for timing: hpim simulate)",
    )


def test_missing_tensor(capsys, folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.decoder.layers.1.fc2.weight"]
    save_file(tensors, broken / "model.safetensors")
    assert main(["run", str(broken), "--functional", "--tokens", "1", "--prompt-len", "1"]) == 1
    err = capsys.readouterr().err
    assert "model.decoder.layers.1.fc2.weight" in err and "Traceback" not in err
