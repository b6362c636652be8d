"""`hpim run MODEL_DIR --functional --tokens T1,T2,... --prompt-len K`: a model's real values
computed by its compiled program (`hpim_ir.sim.functional.isa`).

The model folder holds `config.json` and `model.safetensors` (Hugging Face layout), or only
`config.json` with `--seed S` for random weights. The decode step is compiled for the machine
(`--hw`, `--policy`, `--no-pipeline`, `--kv-cache`, as `hpim compile`) and every token is
stepped through it: the first K as the prompt, the rest teacher-forced, then `--generate N`
greedy tokens. The prompt goes through the decode program one token at a time (the same
values a prefill computes): the compiled prefill program's values are not checked yet.
"""

import argparse


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
    from pathlib import Path

    import numpy as np
    from xdsl.context import Context

    from hpim_ir.cli.compile_cmd import lower_pass
    from hpim_ir.errors import HpimError
    from hpim_ir.frontend import build_module, load_config
    from hpim_ir.hardware import load_hardware
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
    machine = IsaMachine(module, weights, load_hardware(args.hw))
    rows = np.stack([machine.step(token) for token in tokens]).astype(np.float32)
    generated: list[int] = []
    last = rows[-1]
    for count in range(args.generate):
        generated.append(int(np.argmax(last)))
        if count + 1 < args.generate:
            last = machine.step(generated[-1])
    if args.json:
        print(json.dumps({"tokens": tokens, "generated": generated, "logits": rows.tolist()}))
        return 0
    print(
        f"{config.name}: {len(tokens)} tokens ({args.prompt_len} prompt) on {args.hw}, "
        f"policy {module.attributes['hpim.policy'].data}"
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
