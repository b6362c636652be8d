"""Pipeline and policy ablation on one model: the decode time per token of the pipelined
`hpim` program, the same without the fine-grained pipeline, the `serial` policy and
`hbm-only`, and their ratios (the compiler issue's target: pipelined < no pipeline,
hpim < serial).

    python benchmarks/bench_policies.py [--model opt-6.7b] [--prompt 256] [--generate 768] [--out FILE]
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "hpim (pipelined)": [],
    "hpim, --no-pipeline": ["--no-pipeline"],
    "serial": ["--policy", "serial"],
    "hbm-only": ["--policy", "hbm-only"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="opt-6.7b")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--generate", type=int, default=768)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = {}
    for name, extra in VARIANTS.items():
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "hpim_ir", "simulate", args.model, "--prompt", str(args.prompt),
             "--generate", str(args.generate), "--json", *extra],
            capture_output=True, text=True, check=True,
        )
        report = json.loads(result.stdout)
        rows[name] = (report, time.perf_counter() - started)
    base = rows["hpim (pipelined)"][0]["decode_ms_per_token"]
    lines = [
        f"# Pipeline and policy ablation: {args.model}, prompt {args.prompt}, generate {args.generate}",
        "",
        f"Made by `python benchmarks/bench_policies.py --model {args.model} --prompt {args.prompt} "
        f"--generate {args.generate}` on {platform.machine()}, Python {platform.python_version()}, "
        "hardware `hpim` (KV cache in HBM). Each row is one `hpim simulate` (8 decode steps "
        "simulated on the central scheduler, the rest interpolated).",
        "",
        "| program | decode per token (ms) | vs pipelined | total (ms) | whole process (s) |",
        "|---|---|---|---|---|",
    ]
    for name, (report, seconds) in rows.items():
        decode = report["decode_ms_per_token"]
        lines.append(
            f"| {name} | {decode:.4f} | {decode / base:.3f}x | {report['total_ms']:,.1f} | {seconds:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
