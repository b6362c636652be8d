"""Speed of the SRAM-PIM engine (a benchmark: timings are reported here, never asserted in
tests).

Workload: the SRAM-PIM side of an OPT-30B-shaped decode step on the `hpim` machine (32
cores), every layer written out: per layer, the 56 heads (d = 128) in two phases over the
cores, each phase a wait for q, a load, q . K^T streamed from HBM, softmax, s . V streamed,
a store and a signal; then the residual add, an all-gather over the 32 cores and a
LayerNorm. One record serves all cores, so the program is about 1000 records and 32 000
instructions. Measured (median of `--runs`): binding to a context length, and the whole
run, at 256, 1024 and 2048 tokens of context; instructions per second.

    python benchmarks/bench_sram.py [--hw hpim] [--layers 48] [--runs 5]
"""

import argparse
import statistics
import time

from hpim_ir.hardware import load_hardware
from hpim_ir.sim.sram import CTX, ProgramBuilder, SramEngine, SramOp, SramProgram, Space, VcuFn

HEAD_DIM, HIDDEN = 128, 7168


def decode_step(layers: int, cores: int) -> tuple[SramProgram, int]:
    """The program and the number of tokens it waits for (all provided at cycle 0)."""
    b = ProgramBuilder()
    share = 2 * HIDDEN // cores
    for buf, size in ((0, 2 * HEAD_DIM), (1, CTX * 2 + 2), (2, 2 * HEAD_DIM), (3, share)):
        b.add(SramOp.ALLOC, None, kind=Space.AM, dst=buf, sizes=[size])
    b.add(SramOp.ALLOC, None, kind=Space.AM, dst=4, sizes=[2 * HIDDEN])
    token = 0
    for _ in range(layers):
        for _ in range(2):  # 56 heads over 32 cores: two phases
            b.add(SramOp.WAIT, None, tok=token)
            b.add(SramOp.LOAD, None, dst=0, sizes=[2 * HEAD_DIM])
            b.add(SramOp.STREAM_MVM, None, dst=1, src0=0, sizes=[HEAD_DIM, CTX + 1])
            b.add(SramOp.VCU, None, kind=VcuFn.SOFTMAX, dst=1, src0=1, sizes=[CTX + 1])
            b.add(SramOp.STREAM_MVM, None, dst=2, src0=1, sizes=[CTX + 1, HEAD_DIM])
            b.add(SramOp.STORE, None, src0=2, sizes=[2 * HEAD_DIM])
            b.add(SramOp.SIGNAL, None, tok=1_000_000 + token)
            token += 1
        b.add(SramOp.WAIT, None, tok=token)
        b.add(SramOp.LOAD, None, dst=3, sizes=[share])
        b.add(SramOp.VCU, None, kind=VcuFn.ADD, dst=3, src0=3, src1=4, sizes=[share // 2])
        b.add(SramOp.ALLGATHER, None, dst=4, src0=3, sizes=[share])
        b.add(SramOp.VCU, None, kind=VcuFn.LAYERNORM, dst=4, src0=4, sizes=[HIDDEN])
        b.add(SramOp.STORE, None, src0=4, sizes=[share])
        b.add(SramOp.SIGNAL, None, tok=1_000_000 + token)
        token += 1
    return b.build(), token


def median_seconds(work, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", default="hpim")
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    hw = load_hardware(args.hw)
    engine = SramEngine(hw)
    program, waits = decode_step(args.layers, hw.sram.cores)
    tokens = dict.fromkeys(range(waits), 0)
    print(f"{hw.name}: {len(program)} records, {args.layers} layers, {hw.sram.cores} cores")
    print("| ctx | instructions | simulated cycles | bind (s) | run (s) | instructions/s |")
    print("|---|---|---|---|---|---|")
    for ctx in (256, 1024, 2048):
        result = engine.run(program, ctx, tokens=tokens)
        instructions = sum(result.instructions)
        bind = median_seconds(lambda: engine.bind(program, ctx), args.runs)
        run = median_seconds(lambda: engine.run(program, ctx, tokens=tokens), args.runs)
        print(
            f"| {ctx} | {instructions} | {result.cycles} | {bind:.4f} | {run:.3f} "
            f"| {instructions / run:,.0f} |"
        )


if __name__ == "__main__":
    main()
