"""`hpim run MODEL_DIR --functional --tokens T1,T2,... --prompt-len K`: a model's real values
computed by its compiled program (`hpim_ir.sim.functional.isa`).

The model folder holds `config.json` and `model.safetensors` (Hugging Face layout), or only
`config.json` with `--seed S` for random weights. The prefill (for the K prompt tokens) and
the decode step are compiled for the machine (`--hw`, `--policy`, `--no-pipeline`,
`--kv-cache`, `--fill-banks`, as `hpim compile`); the prompt runs through the compiled prefill, compiled with
`all_logits` so that it computes every prompt token's logits (one row per position, from the
program itself; the timing path computes the last token's only), and its KV cache in HBM is
where the decode step goes on from: the rest of the tokens teacher-forced, then
`--generate N` greedy tokens. Where the prefill is not lowered (its projections placed on
HBM-PIM: the `hbm-only` policy, or a one-token prompt, which is a decode step; a KV cache
resident in SRAM-PIM) the prompt goes through the decode step one token at a time, as
`hpim simulate` times such a prefill. The output and `--json` (`"prefill"`: `compiled` or
`decode steps`) say which.
"""

import argparse

from hpim_ir.cli.compile_cmd import add_fill_banks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a folder with config.json (and model.safetensors)")
    parser.add_argument(
        "--functional",
        action="store_true",
        help="compute the values with the compiled ISA program (the only mode: timing is "
        "`hpim simulate`)",
    )
    parser.add_argument("--tokens", required=True, help="token ids, comma-separated")
    parser.add_argument(
        "--prompt-len", type=int, required=True, help="how many of the tokens are the prompt"
    )
    parser.add_argument("--generate", type=int, default=0, help="greedy tokens after them")
    parser.add_argument("--json", action="store_true", help="print tokens and logits as JSON")
    parser.add_argument("--hw", default="hpim", help="hardware preset or TOML file (default: hpim)")
    parser.add_argument("--policy", help="partitioning policy (default: the hardware's, else hpim)")
    parser.add_argument("--no-pipeline", action="store_true", help="no fine-grained pipeline")
    parser.add_argument("--kv-cache", choices=("sram", "hbm"), help="default: the hardware's")
    add_fill_banks(parser)
    parser.add_argument(
        "--seed", type=int, help="random weights from this seed (a folder without safetensors)"
    )


def _tokens(text: str) -> list[int]:
    from hpim_ir.errors import HpimError

    try:
        tokens = [int(part) for part in text.split(",")]
    except ValueError:
        raise HpimError(f"--tokens must be comma-separated integers, got {text!r}") from None
    if any(token < 0 for token in tokens):
        raise HpimError(f"--tokens: token ids are non-negative, got {text!r}")
    return tokens


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    import numpy as np
    from xdsl.context import Context

    from hpim_ir.cli.compile_cmd import lower_pass
    from hpim_ir.errors import HpimError
    from hpim_ir.frontend import build_module, load_config
    from hpim_ir.hardware import load_hardware
    from hpim_ir.passes.lower_sram_linear import KvCacheInSram, PrefillOnHbm
    from hpim_ir.sim.functional.isa import IsaMachine
    from hpim_ir.weights import load_weights, random_weights

    if not args.functional:
        raise HpimError("hpim run computes values with --functional (for timing: hpim simulate)")
    folder = Path(args.model)
    if not folder.is_dir():
        raise HpimError(f"{folder}: no such model folder")
    tokens = _tokens(args.tokens)
    if not 1 <= args.prompt_len <= len(tokens):
        raise HpimError(
            f"--prompt-len {args.prompt_len} must be between 1 and the {len(tokens)} tokens given"
        )
    if args.generate < 0:
        raise HpimError(f"--generate must be non-negative, got {args.generate}")
    config = load_config(str(folder))
    module = build_module(config, phase="decode", prompt=1)
    if args.seed is not None:
        weights = random_weights(module, args.seed)
    elif any(folder.glob("model*.safetensors*")):
        weights = load_weights(module, folder)
    else:
        raise HpimError(f"{folder}: no model.safetensors (give --seed S for random weights)")
    vocab = config.vocab_size
    for token in tokens:
        if token >= vocab:
            raise HpimError(
                f"--tokens: token id {token} is outside the vocabulary (0..{vocab - 1})"
            )
    positions = len(tokens) + args.generate
    if positions > config.max_positions:
        raise HpimError(f"{positions} tokens exceed the model's {config.max_positions} positions")
    args.granularity, args.max_context = "tile", 0
    for stage in lower_pass(args).stages():
        stage.apply(Context(), module)
    hw = load_hardware(args.hw)
    machine = IsaMachine(module, weights, hw)
    prompt = tokens[: args.prompt_len]
    try:
        prefill = build_module(config, phase="prefill", prompt=args.prompt_len)
        stages = lower_pass(args).stages("prefill")
        stages[-1] = replace(stages[-1], all_logits=True)  # convert-pim-to-isa
        for stage in stages:
            stage.apply(Context(), prefill)
    except (PrefillOnHbm, KvCacheInSram):
        prefill = None  # the prompt token by token through the decode step
    if prefill is not None:
        first = IsaMachine(prefill, weights, hw)
        prompt_rows = list(first.prefill(prompt))
        machine.continue_from(first)
    else:
        prompt_rows = [machine.step(token) for token in prompt]
    rest = [machine.step(token) for token in tokens[args.prompt_len :]]
    rows = np.stack(prompt_rows + rest).astype(np.float32)
    generated: list[int] = []
    last = rows[-1]
    for count in range(args.generate):
        generated.append(int(np.argmax(last)))
        if count + 1 < args.generate:
            last = machine.step(generated[-1])
    if args.json:
        how = "compiled" if prefill is not None else "decode steps"
        report = {"tokens": tokens, "prefill": how, "generated": generated, "logits": rows.tolist()}
        print(json.dumps(report))
        return 0
    print(
        f"{config.name}: {len(tokens)} tokens ({args.prompt_len} prompt"
        f"{', compiled prefill' if prefill is not None else ', prefill as decode steps'}) "
        f"on {args.hw}, policy {module.attributes['hpim.policy'].data}"
    )
    for position, row in enumerate(rows):
        best = int(np.argmax(row))
        print(
            f"  after token {position:>3} ({tokens[position]:>6}): predicts {best:>6} "
            f"(logit {row[best]:.3f})"
        )
    if args.generate:
        print(f"generated: {','.join(map(str, generated))}")
    return 0
