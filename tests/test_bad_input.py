"""Bad input at every entry point gives one `HpimError` (a CLI: `hpim X: error: message`, exit
status 1), never another exception and never a silently wrong result: the cases an audit of
the CLIs, the loaders and the readers found, and properties that mutate valid assembly,
hardware files, GPU baselines and model configs and run what they feed."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from hpim_ir.asm import read_asm
from hpim_ir.baselines.gpu import GpuBaseline
from hpim_ir.baselines.presets import PRESETS as BASELINE_PRESETS
from hpim_ir.cli import main
from hpim_ir.opt import main as opt_main
from hpim_ir.errors import HpimError
from hpim_ir.frontend import build_module, config_from_dict, load_config
from hpim_ir.hardware import load_hardware
from hpim_ir.hardware.loader import PRESETS as HARDWARE_PRESETS
from hpim_ir.sim.program import MachineProgram
from hpim_ir.sim.scheduler import simulate_machine
from hpim_ir.weights import random_weights, save_model

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "attention_head.hpimasm"
TINY = {
    "model_type": "opt",
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "ffn_dim": 128,
    "vocab_size": 100,
    "max_position_embeddings": 64,
}
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
    "max_position_embeddings": 64,
}
PROPERTY = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


def fails(capsys, argv: list[str], message: str) -> None:
    """`hpim ARGV` exits 1 with exactly `hpim COMMAND: error: MESSAGE` on stderr."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"hpim {argv[0]}: error: {message}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OPT model folder: config.json and model.safetensors."""
    folder = tmp_path_factory.mktemp("tiny")
    save_model(folder, TINY, random_weights(config_from_dict(TINY, "tiny", "tiny"), seed=1))
    return folder


# ---------------------------------------------------------------------------------------
# Command-line flags and output files.


def test_an_output_file_that_cannot_be_written_is_named(capsys, tmp_path: Path, tiny: Path) -> None:
    missing = tmp_path / "no-such-folder" / "out.mlir"
    fails(capsys, ["import", str(tiny), "-o", str(missing)],
          f"cannot write {missing}: No such file or directory")
    fails(capsys, ["import", str(tiny), "-o", str(tmp_path)], f"cannot write {tmp_path}: Is a directory")
    fails(capsys, ["compile", str(tiny), "-o", str(tmp_path)], f"cannot write {tmp_path}: Is a directory")


def test_import_checks_the_prompt_its_statistics_are_taken_after(capsys, tiny: Path) -> None:
    # The decode step does not depend on --prompt, but `--stats` reports FLOPs at context
    # prompt + 1: a prompt of -5 printed them "at context -4".
    fails(capsys, ["import", str(tiny), "--stats", "--prompt", "-5"],
          f"prompt length -5 is outside 1..64 (max_position_embeddings of {tiny.name})")


def test_compile_rejects_a_negative_max_context(capsys, tiny: Path) -> None:
    # It was taken as given and skipped the check that an SRAM-resident KV cache fits.
    fails(capsys, ["compile", str(tiny), "--kv-cache", "sram", "--max-context", "-4"],
          "pim-tile-sram: max-context must be a number of tokens (0: the model's maximum), got -4")


def test_eval_rejects_an_unknown_model_before_running_anything(capsys, tmp_path: Path) -> None:
    # It ran the grid, wrote a report of failed runs and exited 0.
    out = tmp_path / "eval"
    assert main(["eval", "paper", "--out", str(out), "--models", "opt-125m,opt-7b"]) == 1
    assert capsys.readouterr().err.startswith("hpim eval: error: unknown model 'opt-7b'")
    assert not out.exists()


def test_run_rejects_a_negative_seed(capsys, tiny: Path) -> None:
    fails(capsys, ["run", str(tiny), "--functional", "--tokens", "1,2", "--prompt-len", "1",
                   "--seed", "-1"],
          "the seed of random weights must be a non-negative integer, got -1")


def test_run_isa_refuses_two_outputs_on_stdout(capsys) -> None:
    # The CSV trace and the JSON report were printed one after the other: neither parsed.
    fails(capsys, ["run-isa", str(EXAMPLE), "--ctx", "4", "--json", "--trace-commands", "-"],
          "--json and --trace-commands - both write to stdout; write the trace to a file")


def test_hpim_opt_names_an_input_that_is_not_text(capsys, tmp_path: Path) -> None:
    # It printed the codec's message ("'utf-8' codec can't decode byte ...") without the file.
    from hpim_ir.opt import main as opt_main

    path = tmp_path / "binary.mlir"
    path.write_bytes(b"builtin.module {}\n\xd0\x00\xff")
    assert opt_main([str(path)]) == 1
    assert capsys.readouterr().err.strip() == f"hpim-opt: error: cannot read {path}: not UTF-8 text"


# ---------------------------------------------------------------------------------------
# Weights.


def _checkpoint(folder: Path, tiny: Path, index: object | None = None, **tensors) -> Path:
    """A copy of `tiny` with `tensors` replaced, or with a shard index holding `index`."""
    folder.mkdir()
    (folder / "config.json").write_text((tiny / "config.json").read_text())
    weights = load_file(tiny / "model.safetensors") | tensors
    if index is None:
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        save_file(weights, folder / "shard.safetensors", metadata={"format": "pt"})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    return folder


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (["shard.safetensors"], "'weight_map' must map tensor names to shard files, got list"),
        ({"lm_head.weight": 5}, "'weight_map' gives tensor 'lm_head.weight' the shard 5; a shard is a file name"),
    ],
)
def test_a_malformed_shard_index_is_named(capsys, tmp_path: Path, tiny: Path, index, message) -> None:
    folder = _checkpoint(tmp_path / "model", tiny, index)
    fails(capsys, ["run", str(folder), "--functional", "--tokens", "1", "--prompt-len", "1"],
          f"{folder / 'model.safetensors.index.json'}: {message}")


def test_a_tensor_holding_nan_is_named_as_such(capsys, tmp_path: Path, tiny: Path) -> None:
    # It was reported as "does not fit FP16: largest magnitude nan".
    name = "model.decoder.layers.1.fc1.weight"
    values = load_file(tiny / "model.safetensors")[name].copy()
    values[3, 4] = np.nan
    folder = _checkpoint(tmp_path / "model", tiny, **{name: values})
    fails(capsys, ["run", str(folder), "--functional", "--tokens", "1", "--prompt-len", "1"],
          f"{folder / 'model.safetensors'}: tensor '{name}' holds nan (the weights must be finite)")


# ---------------------------------------------------------------------------------------
# Model configs and the llm module's own description.


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": ["opt"]}, "unknown model_type ['opt']; hpim supports 'opt', 'llama'"),
        ({"hidden_act": ["silu"]}, "key 'hidden_act' is ['silu']; hpim supports 'silu'"),
        ({"rms_norm_eps": math.inf}, "key 'rms_norm_eps' must be a positive number, got inf"),
        # 1e-300 becomes 0 in the FP32 epsilon of llm.rms_norm, 1e300 does not fit it
        ({"rms_norm_eps": 1e-300}, "key 'rms_norm_eps' is 1e-300, which FP32 cannot hold"),
        ({"rope_theta": 1e300}, "key 'rope_theta' is 1e+300, which FP32 cannot hold"),
    ],
)
def test_config_values_the_module_cannot_hold_are_named(change: dict, message: str) -> None:
    with pytest.raises(HpimError) as caught:
        config_from_dict(TINY_LLAMA | change, "m", "config.json")
    assert str(caught.value).startswith(f"config.json: {message}")


@pytest.mark.parametrize("tokens", [0, 5])
def test_llm_annotate_checks_the_step_tokens_against_the_function(tokens: int) -> None:
    # With tokens = 0 or 5 on a decode step, every linear layer was classified as a GEMM.
    from xdsl.context import Context
    from xdsl.dialects.builtin import IntegerAttr

    from hpim_ir.passes.llm_annotate import LlmAnnotatePass

    module = build_module(config_from_dict(TINY, "tiny", "tiny"), phase="decode")
    info = dict(module.attributes["llm.model"].data)
    info["tokens"] = IntegerAttr(tokens, 64)
    module.attributes["llm.model"] = type(module.attributes["llm.model"])(info)
    with pytest.raises(HpimError, match=re.escape(
        f"llm.model gives tokens = {tokens}, but @decode_step takes tensor<1xi32>"
    )):
        LlmAnnotatePass().apply(Context(), module)


# ---------------------------------------------------------------------------------------
# Hardware and baseline files: values beyond any device.


@pytest.mark.parametrize(
    ("line", "value", "message"),
    [
        # 2**32 cycles between MACs: the engine refreshed through the gaps for hours
        ("nCCDAB = 15", "4294967296", "hbm.timing.nCCDAB = 4294967296: must be at most 1,048,576 (cycles)"),
        ("tRFC_ns = 410", "1e300", "hbm.timing.tRFC_ns = 1e+300 ("),
        # int64 overflow in the link's cycles
        ("clock_mhz = 1000", "1e300", "sram.clock_mhz = 1e+300: must be at most 100,000 (MHz)"),
        ("data_rate_gbps = 5.2", "1e300", "hbm.data_rate_gbps = 1e+300: must be at most 100 (Gb/s)"),
        ("bandwidth_gbs = 2662.4", "1e300", "link.bandwidth_gbs = 1e+300: must be at most 1,000,000 (GB/s)"),
        ("mvm_latency_cycles = 12", "4294967296", "sram.pim.mvm_latency_cycles = 4294967296: must be at most"),
        # per-channel and per-bank state for billions of them
        ("stacks = 4", "4096", "hbm.channels = 16: stacks x channels = 65536 channels: must be at most 4096"),
        ("ranks = 1", "100000", "hbm.banks_per_group = 4: pseudo_channels x ranks x bank_groups x "
                                "banks_per_group = 6400000 banks per channel: must be at most 4096"),
    ],
)
def test_hardware_values_beyond_any_device_are_named(tmp_path: Path, line: str, value: str, message: str) -> None:
    path = _preset_with(HARDWARE_PRESETS / "hpim.toml", line, value, tmp_path)
    with pytest.raises(HpimError) as caught:
        load_hardware(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def _preset_with(preset: Path, line: str, value: str, tmp_path: Path) -> Path:
    """A copy of `preset` whose key on `line` holds `value`."""
    text = preset.read_text()
    assert line in text
    path = tmp_path / preset.name
    path.write_text(text.replace(line, f"{line.split(' = ')[0]} = {value}"))
    return path


def _lowered_up_to_isa(config: dict, phase: str, passes: str, tmp_path: Path) -> str:
    """A tiny model's module after `hpim-opt -p PASSES` (text: to edit by hand)."""
    module = build_module(config_from_dict(config, "tiny", "tiny"), phase, prompt=8)
    source, lowered = tmp_path / "llm.mlir", tmp_path / "lowered.mlir"
    source.write_text(str(module))
    assert opt_main([str(source), "-p", passes, "-o", str(lowered)]) == 0
    return lowered.read_text()


PRE_ISA = "llm-annotate,convert-llm-to-pim,pim-tile-hbm,pim-tile-sram,pim-schedule,pim-insert-pipeline"


def test_a_hand_edited_tile_names_the_missing_entry(capsys, tmp_path: Path) -> None:
    text = _lowered_up_to_isa(TINY, "decode", PRE_ISA, tmp_path)
    edited = tmp_path / "edited.mlir"
    edited.write_text(re.sub(r"rows_hi = \d+ : i64, ", "", text, count=1))
    assert opt_main([str(edited), "-p", "convert-pim-to-isa"]) == 1
    err = capsys.readouterr().err
    assert "a GemvTile dictionary needs 'rows_hi' as an integer (no such entry)" in err
    edited.write_text(re.sub(r"groups = \d+ : i64", 'groups = "x"', text, count=1))
    assert opt_main([str(edited), "-p", "convert-pim-to-isa"]) == 1
    assert "a GemvTile dictionary needs 'groups' as an integer (got \"x\")" in capsys.readouterr().err


def test_a_prefill_lowered_without_its_placements_says_which_pass_to_run(capsys, tmp_path: Path) -> None:
    passes = "llm-annotate,convert-llm-to-pim,pim-tile-sram"
    text = _lowered_up_to_isa(TINY, "prefill", passes, tmp_path)
    untiled = tmp_path / "untiled.mlir"
    untiled.write_text(text)
    assert opt_main([str(untiled), "-p", "convert-pim-to-isa"]) == 1
    assert "in HBM has no placement; run pim-tile-hbm first" in capsys.readouterr().err


def test_tiles_of_one_machine_are_not_lowered_for_another(capsys, tmp_path: Path) -> None:
    text = _lowered_up_to_isa(TINY, "decode", PRE_ISA, tmp_path)
    tiled = tmp_path / "tiled.mlir"
    tiled.write_text(text)
    assert opt_main([str(tiled), "-p", "convert-pim-to-isa{hw=ianus-like}"]) == 1
    assert capsys.readouterr().err.strip() == (
        "hpim-opt: error: convert-pim-to-isa{hw=ianus-like} lowers for 'ianus-like', but "
        "pim-tile-hbm tiled the module for 'hpim'; give the passes the same hw"
    )


def test_a_signal_on_the_consumer_side_is_named(capsys, tmp_path: Path) -> None:
    text = _lowered_up_to_isa(TINY, "decode", PRE_ISA, tmp_path)
    # The first signal is raised by HBM-PIM (the embedding lookup leaving for SRAM-PIM).
    moved = re.sub(r"(pim.signal \d+ : i64) on #pim.hbm", r"\1 on #pim.sram", text, count=1)
    assert moved != text
    edited = tmp_path / "edited.mlir"
    edited.write_text(moved)
    assert opt_main([str(edited), "-p", "convert-pim-to-isa"]) == 1
    assert "is on #pim.sram, but its transfer leaves #pim.hbm" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "value", "message"),
    [
        ("memory_gib = 80", "nan", "gpu.memory_gib = nan: must be a finite number"),
        ("memory_gib = 80", "1e308", "gpu.memory_gib = 1e+308: must be in (0, 1.04858e+06]"),
        ("kernel_us = 11.2", "2e6", "overhead.kernel_us = 2000000.0: must be in [0, 1e+06]"),
        # Found by the mutation property: at 1e-300 GB/s and an efficiency of 1e-300 the
        # achieved bandwidth underflows to 0 and every time is infinite.
        ("bandwidth_gb_s = 2039", "1e-300", "gpu.bandwidth_gb_s = 1e-300: must be at least 1"),
        ("bandwidth = 0.92", "1e-300", "efficiency.bandwidth = 1e-300: must be at least 0.001"),
    ],
)
def test_baseline_values_beyond_any_gpu_are_named(tmp_path: Path, line: str, value: str, message: str) -> None:
    path = _preset_with(BASELINE_PRESETS / "a100.toml", line, value, tmp_path)
    with pytest.raises(HpimError) as caught:
        GpuBaseline(path)
    assert str(caught.value) == f"{path}: {message}"


# ---------------------------------------------------------------------------------------
# Properties: mutated valid input is read and run, or rejected with HpimError.

NUMBERS = ["0", "1", "3", "7", "65", "-1", "0.5", "1048577", "4294967296", "1e300", "1e-300", "nan"]


def mutations(lines: list[str], tokens: list[str]):
    """A strategy of texts: `lines` with one to three edits of lines that are not comments
    (drop a line, repeat one, replace a number in one, replace or swap its space-separated
    tokens)."""

    @st.composite
    def edit(draw):
        text = list(lines)
        for _ in range(draw(st.integers(1, 3))):
            code = [i for i, line in enumerate(text) if line.strip() and line[0] != "#"]
            if not code:
                break
            at = draw(st.sampled_from(code))
            line = text[at].split("#")[0]
            kind = draw(st.sampled_from(["number"] * 3 + ["drop", "repeat", "token", "swap"]))
            numbers = list(re.finditer(r"-?\d+(\.\d+)?(e[-+]?\d+)?", line))
            words = line.split(" ")
            if kind == "drop":
                del text[at]
            elif kind == "repeat":
                text.insert(at, text[draw(st.integers(0, len(text) - 1))])
            elif kind == "number" and numbers:
                found = draw(st.sampled_from(numbers))
                text[at] = line[: found.start()] + draw(st.sampled_from(NUMBERS)) + line[found.end() :]
            elif kind == "token":
                words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(tokens))
                text[at] = " ".join(words)
            elif kind == "swap" and len(words) > 1:
                i, j = draw(st.integers(0, len(words) - 1)), draw(st.integers(0, len(words) - 1))
                words[i], words[j] = words[j], words[i]
                text[at] = " ".join(words)
        return "\n".join(text)

    return edit()


ASM_TOKENS = ["hbm.gemv", "hbm.read", "sram.vcu.exp", "sram.mvm", ".section", "repeat=0", "ch=3:2",
              "tok=99", "ctx=1/0", "off=-5", "cores=40:41", "space=pim", "rows=ceildiv(ctx,0)",
              "n=0*ctx", "part=x", "x", "="]
HPIM = load_hardware("hpim")


@settings(max_examples=150, **PROPERTY)
@given(text=mutations(EXAMPLE.read_text().split("\n"), ASM_TOKENS))
def test_mutated_assembly_runs_or_raises_hpim_error(text: str) -> None:
    try:
        program = read_asm(text, "prog.hpimasm")
        if not isinstance(program, MachineProgram):
            program = MachineProgram.from_hbm(program, "prog.hpimasm")
        result = simulate_machine(program, HPIM, ctx=16)
    except HpimError:
        return
    assert result.ns >= 0


TOML_TOKENS = ["=", "[hbm]", "[sram]", "[link]", '"x"', "true", "[]", "{}", "nCCDAB", "extends"]
HBM_ONLY = "\n".join(line for line in EXAMPLE.read_text().split("\n")
                     if line.startswith("hbm.") and not line.startswith(("hbm.wait", "hbm.signal")))


def simulate_example(hw) -> float:
    """The example's step on `hw` (its HBM-PIM lines alone on a machine without SRAM-PIM),
    in ns."""
    text = EXAMPLE.read_text() if hw.sram is not None else HBM_ONLY
    program = read_asm(text, "prog.hpimasm")
    if not isinstance(program, MachineProgram):
        program = MachineProgram.from_hbm(program, "prog.hpimasm")
    return simulate_machine(program, hw, ctx=16).ns


@pytest.mark.parametrize("preset", ["hpim", "hbm3-5.2gbps"])
def test_every_number_of_a_preset_made_huge_simulates_or_raises_hpim_error(
    tmp_path: Path, preset: str
) -> None:
    # 2**32 cycles of a timing or latency hung the engines (refresh after refresh through
    # the gap); 1e300 overflowed int64 in the link's and the DRAM's cycle counts.
    lines = (HARDWARE_PRESETS / f"{preset}.toml").read_text().split("\n")
    path = tmp_path / "hw.toml"
    for at, line in enumerate(lines):
        if not re.fullmatch(r"\w+ = [0-9.]+\s*(#.*)?", line):
            continue
        for value in ("4294967296", "1e300"):
            path.write_text("\n".join([*lines[:at], f"{line.split()[0]} = {value}", *lines[at + 1 :]]))
            try:
                ns = simulate_example(load_hardware(path))
            except HpimError:
                continue
            assert math.isfinite(ns), line


@settings(max_examples=150, **PROPERTY)
@given(
    data=st.data(),
    preset=st.sampled_from(["hpim", "ianus-like", "hbm3-5.2gbps"]),
)
def test_mutated_hardware_files_load_and_simulate_or_raise_hpim_error(
    tmp_path: Path, data, preset: str
) -> None:
    lines = (HARDWARE_PRESETS / f"{preset}.toml").read_text().split("\n")
    path = tmp_path / "hw.toml"
    path.write_text(data.draw(mutations(lines, TOML_TOKENS)))
    try:
        ns = simulate_example(load_hardware(path))
    except HpimError:
        return
    assert math.isfinite(ns) and ns >= 0


def estimate_ms(path: Path) -> list[float]:
    """Prefill, decode per token and tokens/s of OPT-125M on the GPU baseline in `path`."""
    estimate = GpuBaseline(path).estimate(load_config("opt-125m"), prompt=16, generate=16)
    return [estimate.prefill_ms, estimate.decode_ms_per_token, estimate.tokens_per_s]


def test_every_number_of_a_baseline_made_extreme_estimates_or_raises_hpim_error(
    tmp_path: Path,
) -> None:
    # nan passed the range checks (every comparison with it is false) and inf or 1e308
    # memory overflowed converting to bytes: a NaN report, or an OverflowError.
    lines = (BASELINE_PRESETS / "a100.toml").read_text().split("\n")
    path = tmp_path / "gpu.toml"
    for at, line in enumerate(lines):
        if not re.fullmatch(r"\w+ = [0-9.]+\s*(#.*)?", line):
            continue
        for value in ("nan", "inf", "1e308", "1e-300", "0", "-1"):
            path.write_text("\n".join([*lines[:at], f"{line.split()[0]} = {value}", *lines[at + 1 :]]))
            try:
                times = estimate_ms(path)
            except HpimError:
                continue
            assert all(math.isfinite(t) and t > 0 for t in times), (line, value, times)


@settings(max_examples=150, **PROPERTY)
@given(data=st.data(), preset=st.sampled_from(["a100", "a100-eager"]))
def test_mutated_baselines_estimate_a_finite_time_or_raise_hpim_error(
    tmp_path: Path, data, preset: str
) -> None:
    lines = (BASELINE_PRESETS / f"{preset}.toml").read_text().split("\n")
    path = tmp_path / "gpu.toml"
    path.write_text(data.draw(mutations(lines, TOML_TOKENS)))
    try:
        times = estimate_ms(path)
    except HpimError:
        return
    assert all(math.isfinite(t) and t > 0 for t in times), times


CONFIG_VALUES = st.sampled_from(
    [0, -1, 1, 2, 3, 16, 48, 10**6, 0.5, math.inf, math.nan, 1e-300, 1e300, True, None, "x",
     "gelu", "gelu_new", "silu", [], {}]
)


@settings(max_examples=200, **PROPERTY)
@given(
    base=st.sampled_from([TINY, TINY_LLAMA]),
    changes=st.lists(
        st.tuples(
            st.sampled_from(sorted({*TINY, *TINY_LLAMA, "head_dim", "rope_theta", "rms_norm_eps",
                                    "activation_function", "hidden_act", "word_embed_proj_dim",
                                    "rope_scaling", "enable_bias", "do_layer_norm_before"})),
            CONFIG_VALUES,
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_configs_build_a_verified_module_or_raise_hpim_error(base: dict, changes) -> None:
    config = dict(base)
    for key, value in changes:
        config[key] = value
    try:
        model = config_from_dict(config, "m", "config.json")
    except HpimError as error:
        assert str(error).startswith("config.json: ")
        return
    build_module(model, phase="decode").verify()
    if model.max_positions >= 4:
        build_module(model, phase="prefill", prompt=4).verify()
