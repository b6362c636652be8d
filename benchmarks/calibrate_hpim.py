"""Re-derive the one calibrated value of the `hpim` preset, the all-bank MAC pacing nCCDAB.

Sweeps nCCDAB over a hardware file that extends `hpim` and overrides it, simulates OPT-13B at
prompt 256 / generate 1024 (the paper's per-part breakdown, 1K output tokens) for each value,
prints our decode time per part (its span: the time some unit works for it; the spans of the
pipelined parts overlap) beside the paper's, and names the value whose GEMV parts
(QKV, attention projection, FFN) are closest to the paper's (root-mean-square log ratio,
`hpim_ir.evaluation.fit_mac_pacing`). Attention is printed, not fitted. docs/calibration.md
explains the choice of parameter.

    python benchmarks/calibrate_hpim.py [--values 6,8,10,12,13,14,15,16,18] [--exact]
"""

import argparse
import tempfile
import time
from pathlib import Path

from hpim_ir.evaluation import (
    BREAKDOWN_PARTS,
    PAPER,
    PAPER_BREAKDOWN_MODEL,
    calibration_error,
    fit_mac_pacing,
)
from hpim_ir.hardware import load_hardware
from hpim_ir.simulate import CompileOptions, simulate_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="6,8,10,12,13,14,15,16,18", help="nCCDAB values to sweep")
    parser.add_argument("--exact", action="store_true", help="simulate every decode step")
    args = parser.parse_args()
    values = [int(text) for text in args.values.split(",")]
    prompt, generate = 256, 1024
    preset = load_hardware("hpim").hbm.timing.nCCDAB
    columns = ["nCCDAB", *BREAKDOWN_PARTS, "other", "decode ms/token", "GEMV error", "wall s"]
    print(f"{PAPER_BREAKDOWN_MODEL}, prompt {prompt}, generate {generate}: decode ms per part")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    paper = PAPER["breakdown_hpim_ms"]
    print("| paper | " + " | ".join(f"{paper[p]:,.0f}" for p in BREAKDOWN_PARTS) + " | — | — | — | — |")
    sweep = {}
    with tempfile.TemporaryDirectory() as folder:
        for value in values:
            path = Path(folder) / f"hpim-nccdab-{value}.toml"
            path.write_text(f'extends = "hpim"\n[hbm.timing]\nnCCDAB = {value}\n')
            started = time.perf_counter()
            report = simulate_request(
                CompileOptions(model=PAPER_BREAKDOWN_MODEL, hw=str(path), max_context=prompt + generate),
                prompt, generate, baselines=[], exact=args.exact,
            )
            seconds = time.perf_counter() - started
            parts = report.spans["decode"]
            sweep[value] = parts
            cells = [f"{parts[p]:,.0f}" for p in (*BREAKDOWN_PARTS, "other")]
            print(f"| {value} | " + " | ".join(cells)
                  + f" | {report.decode_ms_per_token:.3f} | {calibration_error(parts):.3f} | {seconds:.1f} |")
    best = fit_mac_pacing(sweep)
    print(f"\nbest fit: nCCDAB = {best} (the hpim preset has {preset})")


if __name__ == "__main__":
    main()
