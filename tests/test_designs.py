"""Other PIM designs as hardware presets + policies: the presets load with the organization
their sources give, a preset's `policy` key is validated, inherited and used by default,
`--baseline NAME` simulates another design, and the simulated designs behave as their
parameters imply."""

import argparse
import contextlib
import io
import json
from pathlib import Path

import pytest
from xdsl.context import Context

from hpim_ir import import_model
from hpim_ir.cli import main
from hpim_ir.cli.compile_cmd import lower_pass
from hpim_ir.dialects import pim
from hpim_ir.errors import HpimError
from hpim_ir.frontend import load_config
from hpim_ir.hardware import load_hardware
from hpim_ir.passes.convert_llm_to_pim import POLICIES, ConvertLlmToPimPass
from hpim_ir.passes.convert_pim_to_isa import weight_name
from hpim_ir.passes.hpim_lower import HpimLowerPass
from hpim_ir.passes.pim_tile_hbm import HbmPlacement, from_dict_attr
from hpim_ir.sim.program import MachineProgram
from hpim_ir.simulate import (
    CompileOptions,
    compile_module,
    compiled_program,
    measure_step,
    resolve_policy,
)

DESIGNS = {"ianus-like": "serial", "attacc-like": "attacc", "cxl-pnm-like": "pnm"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPIM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", DESIGNS)
def test_design_presets_load_with_their_policy(name: str) -> None:
    hw = load_hardware(name)
    assert hw.name == name and hw.description
    assert hw.policy == DESIGNS[name] and hw.policy in POLICIES
    assert hw.sram is not None and hw.link is not None


def test_ianus_like_is_gddr6_aim() -> None:
    hbm = load_hardware("ianus-like").hbm
    # 96 chips x 2 channels x 16 banks, one 16-multiplier PU per bank.
    assert (hbm.total_channels, hbm.banks_per_channel, hbm.total_banks) == (192, 16, 3072)
    # 16384 rows x 2 KiB per bank: 8 Gb per chip, 96 GiB in all (HPIM's capacity).
    assert hbm.row_bytes == 2048 and hbm.capacity_bytes == 96 * 2**30
    assert hbm.capacity_bytes == load_hardware("hpim").hbm.capacity_bytes
    # The command clock is 4 / 16 Gb/s = 0.25 ns; the timings were given in ns.
    assert hbm.tck_ns == 0.25
    t = hbm.timing
    assert (t.nBL, t.nRCD, t.nRP, t.nCCDAB, t.nRC) == (4, 112, 64, 4, 178)
    # A x16 channel at 16 Gb/s moves 32 GB/s: 192 channels -> 6144 GB/s.
    assert hbm.peak_bandwidth_gbs == pytest.approx(192 * 32)
    # Every PU reads 32 B every ns (1 GHz): 3072 x 32 GB/s; 2 x 16 FLOPs per PU-ns
    # = 1.024 TFLOPS per 32-PU chip, AiM's "1 TFLOPS per chip".
    assert hbm.peak_pim_bandwidth_gbs == pytest.approx(3072 * 32)
    assert hbm.peak_pim_gflops / 96 == pytest.approx(1024)


def test_ianus_like_holds_the_largest_compared_model() -> None:
    # OPT-30B's weights and KV cache (69.6 GB as laid out) fit its 96 GiB: it compiles.
    options = CompileOptions("opt-30b", "ianus-like", "serial", max_context=768)
    compile_module(options)


def test_policy_is_inherited_validated_and_overridable(tmp_path: Path) -> None:
    child = tmp_path / "child.toml"
    child.write_text('extends = "ianus-like"\n[hbm]\nstacks = 16\n')
    assert load_hardware(child).policy == "serial"
    assert resolve_policy(str(child), None) == "serial"
    assert resolve_policy(str(child), "hpim") == "hpim"
    assert load_hardware("hpim").policy is None and resolve_policy("hpim", None) == "hpim"

    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "ianus-like"\npolicy = "nope"\n')
    with pytest.raises(HpimError, match=r"bad\.toml: policy = 'nope': unknown policy; registered: hpim"):
        load_hardware(bad)
    bad.write_text('extends = "ianus-like"\npolicy = 3\n')
    with pytest.raises(HpimError, match=r"bad\.toml: policy = 3: must be a string"):
        load_hardware(bad)


def test_compile_takes_the_presets_policy_unless_given() -> None:
    args = argparse.Namespace(
        hw="ianus-like", policy=None, no_pipeline=False, granularity="tile", kv_cache=None,
        max_context=0, fill_banks="all",
    )
    assert lower_pass(args).policy == "serial"
    args.policy = "hbm-only"
    assert lower_pass(args).policy == "hbm-only"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_baseline_names_a_design_simulated_here() -> None:
    # The design against itself: its baseline entry must be exactly its own report.
    status, out, _ = run_cli(
        "simulate", "opt-125m", "--prompt", "8", "--generate", "4", "--json",
        "--hw", "ianus-like", "--baseline", "ianus-like", "--baseline", "a100",
    )
    assert status == 0
    report = json.loads(out)
    assert report["hw"] == "ianus-like" and report["policy"] == "serial"
    baseline = report["baseline"]
    assert {"name", "prefill_ms", "decode_ms_per_token", "total_ms"} <= set(baseline)
    assert baseline["name"] == "ianus-like" and baseline["policy"] == "serial"
    assert [b["name"] for b in report["baselines"]] == ["ianus-like", "a100"]
    for key in ("prefill_ms", "decode_ms_per_token", "total_ms", "tokens_per_s", "breakdown", "spans"):
        assert baseline[key] == report[key]


def test_unknown_baseline_is_one_message() -> None:
    status, _, err = run_cli("simulate", "opt-125m", "--baseline", "nope")
    assert status != 0 and "Traceback" not in err
    assert "unknown baseline 'nope': not a GPU baseline (a100" in err
    assert "nor a hardware preset (" in err and "ianus-like" in err


def test_baseline_file_that_is_neither_kind_names_both_problems(tmp_path: Path) -> None:
    junk = tmp_path / "junk.toml"
    junk.write_text("[hbm]\nstacks = 1\n")
    status, _, err = run_cli("simulate", "opt-125m", "--baseline", str(junk))
    assert status != 0 and "Traceback" not in err
    assert f"baseline {junk}: neither a GPU baseline ({junk}: unknown key 'hbm')" in err
    assert f"nor a hardware description ({junk}: hbm.channels is missing)" in err


@pytest.fixture(scope="module")
def opt350m_steps() -> dict:
    """One decode step of OPT-350M at context 512 on hpim and on ianus-like."""
    steps = {}
    for hw in ("hpim", "ianus-like"):
        options = CompileOptions("opt-350m", hw, resolve_policy(hw, None), max_context=513)
        program, _ = compiled_program(options, use_cache=False)
        steps[hw] = measure_step(program, load_hardware(hw), 512)
    return steps


CONTEXT = 512
# OPT-350M: 24 layers, hidden 1024 = 16 heads x 64.
KV_BYTES = 2 * 24 * CONTEXT * 1024 * 2  # K and V of every layer, FP16: 50.3 MB
STREAMS = 24 * 16 * 2  # one streamed GEMV per head for K, one for V


def test_ianus_like_serializes_and_streams_attention_through_one_npu(opt350m_steps) -> None:
    step = opt350m_steps["ianus-like"]
    # `serial`: the NPU and the AiM PUs never work at the same time (token hand-offs aside).
    assert step.overlap_ns < 0.005 * step.ns
    # The one NPU streams K and V through its Matrix Unit at 128 FP16 values per 1 GHz cycle
    # (256 B/ns), and each streamed GEMV pays the array's latency (192 cycles) and the
    # link's (30 ns): attention takes at least KV_BYTES / 256 + STREAMS x 222 ns.
    attention_bound = KV_BYTES / 256 + STREAMS * (192 + 30)
    assert step.spans_ns["attention"] >= attention_bound
    assert step.ns >= attention_bound


def test_ianus_like_fc_runs_faster_attention_slower_than_hpim(opt350m_steps) -> None:
    hpim, ianus = opt350m_steps["hpim"], opt350m_steps["ianus-like"]
    fc = ("qkv", "attention_proj", "ffn")
    # FC GEMVs run in the PUs. ianus-like's peak is 3072 PUs x 32 B/ns = 98.3 TB/s against
    # hpim's 4096 x 32 B / (15 x 0.769 ns) = 11.4 TB/s; its 2 KiB rows cost 64 MACs of 1 ns
    # plus tRCD + tRP = 44 ns, so it keeps at least 64 / 108 of its peak, 5x hpim's best.
    # A small model reaches few of its channels (one head per channel): allow 2x.
    assert 2 * sum(ianus.spans_ns[p] for p in fc) < sum(hpim.spans_ns[p] for p in fc)
    # Attention: ianus-like's one Matrix Unit (256 B/ns) against hpim's 32 cores fed over a
    # 2662 GB/s link: more than 10x the stream rate. At this context the attention dominates
    # ianus-like's step, so the whole step is slower than hpim's.
    assert ianus.spans_ns["attention"] > hpim.spans_ns["attention"]
    assert ianus.ns > hpim.ns


def test_attacc_like_is_an_a100_beside_hbm3_pim() -> None:
    hw = load_hardware("attacc-like")
    # 5 HBM3-PIM stacks of 16 GiB: the A100 80 GB's stack count and capacity.
    assert hw.hbm.stacks == 5 and hw.hbm.capacity_bytes == 80 * 2**30
    assert hw.hbm.timing.nCCDAB == 6  # AttAcc's power-constrained MAC pacing
    # 108 SMs x 32 x 32 FP16 MACs x 2 FLOPs x 1.41 GHz = 311.9 TFLOPS, the A100's 312.
    sram = hw.sram
    tflops = 2 * sram.cores * sram.tcu.rows * sram.tcu.cols * sram.clock_mhz * 1e6 / 1e12
    assert tflops == pytest.approx(312, rel=0.001)
    assert hw.link.bandwidth_gbs == 2039  # the A100 80 GB's HBM2e bandwidth


def test_cxl_pnm_like_is_lpddr5x() -> None:
    hbm = load_hardware("cxl-pnm-like").hbm
    # 64 x16 channels x 4 dies x 16 banks of 65536 rows of 2 KiB: 512 GiB.
    assert (hbm.total_channels, hbm.banks_per_channel, hbm.row_bytes) == (64, 64, 2048)
    assert hbm.capacity_bytes == 512 * 2**30
    # 32 B bursts every 1.875 ns (BL16 at 8533 MT/s) on 64 channels: 1092 GB/s, "1.1 TB/s".
    assert hbm.tck_ns == pytest.approx(4 / 8.533) and hbm.timing.nBL == 4
    assert hbm.peak_bandwidth_gbs == pytest.approx(64 * 32 / 1.875, rel=1e-3)
    assert load_hardware("cxl-pnm-like").link.bandwidth_gbs == 1100


_PLACED_KINDS = (pim.LinearOp, pim.AttentionScoresOp, pim.SoftmaxOp, pim.AttentionValuesOp)


def _placed(policy: str, phase: str) -> dict[str, set[pim.PlaceAttr]]:
    """Where `policy` places each kind of op of OPT-125M's decode step or prefill."""
    module = import_model("opt-125m", phase=phase, prompt=8)
    ConvertLlmToPimPass(policy=policy).apply(Context(), module)
    places: dict[str, set[pim.PlaceAttr]] = {}
    for op in module.walk():
        if isinstance(op, _PLACED_KINDS):
            places.setdefault(op.name, set()).add(op.place)
    return places


def test_attacc_and_pnm_place_ops_as_the_designs_do() -> None:
    sram, hbm = {pim.SRAM}, {pim.HBM}
    # AttAcc: FC on the GPU (weights streamed), attention in HBM-PIM in decode; the GPU runs
    # the whole prefill.
    assert _placed("attacc", "decode") == {
        "pim.linear": sram, "pim.attention_scores": hbm, "pim.softmax": sram,
        "pim.attention_values": hbm,
    }
    assert set().union(*_placed("attacc", "prefill").values()) == sram
    # CXL-PNM: everything on the near-memory engine, in both phases.
    for phase in ("decode", "prefill"):
        assert set().union(*_placed("pnm", phase).values()) == sram
    assert POLICIES["attacc"].kv_cache == POLICIES["pnm"].kv_cache == "hbm"


@pytest.fixture(scope="module")
def opt125m_streamed_steps() -> dict:
    """One decode step of OPT-125M at context 512 on attacc-like and on cxl-pnm-like."""
    steps = {}
    for hw in ("attacc-like", "cxl-pnm-like"):
        options = CompileOptions("opt-125m", hw, resolve_policy(hw, None), max_context=513)
        module = compile_module(options)
        gemvs = [op for op in module.walk() if op.name == "hbm_isa.gemv"]
        step = measure_step(MachineProgram.from_module(module), load_hardware(hw), 512)
        steps[hw] = (step, {g.attributes["part"].data for g in gemvs})
    return steps


# OPT-125M: 12 layers of q/k/v/o (768 x 768) and fc1/fc2 (768 x 3072), an LM head of 50272 x
# 768, FP16; K and V of 513 positions x 768 per layer.
LAYER_WEIGHT_BYTES = 12 * (4 * 768 * 768 + 2 * 768 * 3072) * 2  # 169.9 MB
HEAD_BYTES = 50272 * 768 * 2  # 77.2 MB
KV_125M_BYTES = 2 * 12 * 513 * 768 * 2  # 18.9 MB


@pytest.mark.slow  # the module's two decode steps take 3 to 6 s
def test_cxl_pnm_like_streams_every_weight_and_the_cache_each_token(opt125m_streamed_steps) -> None:
    step, pim_parts = opt125m_streamed_steps["cxl-pnm-like"]
    # No bank PU computes: every byte of every weight and of the cached K/V crosses the
    # 1.1 TB/s link to the engine every token, 247 MB + 18.9 MB: at least 241.8 us.
    assert pim_parts == set()
    assert step.ns >= (LAYER_WEIGHT_BYTES + HEAD_BYTES + KV_125M_BYTES) / 1100


@pytest.mark.slow  # the module's two decode steps take 3 to 6 s
def test_attacc_like_streams_fc_weights_and_computes_attention_beside_the_cache(
    opt125m_streamed_steps,
) -> None:
    step, pim_parts = opt125m_streamed_steps["attacc-like"]
    # The only bank-PU work is attention (q.K^T and s.V beside the cache).
    assert pim_parts == {"attention"}
    # The layers' FC weights cross the GPU's 2039 GB/s: their parts take at least 83.3 us.
    fc = sum(step.spans_ns[p] for p in ("qkv", "attention_proj", "ffn"))
    assert fc >= LAYER_WEIGHT_BYTES / 2039
    # Attention in 5120 bank PUs beside the cache beats streaming the cache to an engine
    # at 1.1 TB/s (cxl-pnm-like: 17.2 us for K and V alone).
    pnm_step, _ = opt125m_streamed_steps["cxl-pnm-like"]
    assert step.spans_ns["attention"] < pnm_step.spans_ns["attention"]
    assert pnm_step.spans_ns["attention"] >= KV_125M_BYTES / 1100


def test_a_streamed_decode_linear_without_a_weight_placement_is_one_message() -> None:
    module = import_model("opt-125m")
    *stages, convert = HpimLowerPass(policy="pnm").stages()
    for stage in stages:
        stage.apply(Context(), module)
    decl = next(
        op for op in module.ops if isinstance(op, pim.WeightOp) and op.sym_name.data == "q_proj"
    )
    del decl.properties["placement"]
    message = (
        r"^convert-pim-to-isa: a pim.linear on #pim.sram streams its weight from HBM; "
        r"@q_proj has no placement \(run pim-tile-hbm first\)$"
    )
    with pytest.raises(HpimError, match=message):
        convert.apply(Context(), module)


@pytest.mark.parametrize("model", ["opt-125m", "opt-1.3b"])
def test_the_streamed_kv_cache_reads_stay_in_the_cache_rows(model: str) -> None:
    # hpim, KV cache in HBM: each layer's K and V context is read out in 4 pieces of stripes
    # (a row of every bank each). At every context up to the model's positions, every piece
    # reads rows of its own cache only, and at the longest the pieces of a cache together
    # read each of its rows once.
    module = import_model(model)
    *stages, convert = HpimLowerPass(kv_cache="hbm").stages()
    for stage in stages:
        stage.apply(Context(), module)
    caches = {
        op.sym_name.data: from_dict_attr(HbmPlacement, op.placement)
        for op in module.ops if isinstance(op, pim.KVCacheOp)
    }
    assert len(caches) == 2
    convert.apply(Context(), module)
    reads = [
        op for stream in module.ops if stream.name == "hbm_isa.stream" for op in stream.body.block.ops
        if op.name == "hbm_isa.read" and op.attributes["part"].data == "attention"
    ]
    positions = load_config(model).max_positions
    for ctx in (1, 100, 511, 512, 1000, positions - 1):
        touched = {name: [] for name in caches}
        for read in reads:
            placement = caches[read.attributes["data"].data["cache"].data]
            per_ctx, div = read.per_ctx.value.data, read.ctx_div.value.data
            off = read.ctx_off.value.data if read.ctx_off is not None else 0
            count = read.rows.value.data + max(0, -(-(per_ctx * ctx + off) // div))
            rows = range(read.row.value.data, read.row.value.data + count)
            assert placement.row_base <= rows.start and rows.stop <= placement.row_base + placement.rows
            touched[read.attributes["data"].data["cache"].data] += rows
        if ctx == positions - 1:
            assert all(sorted(t) == list(range(caches[n].row_base, caches[n].row_base + caches[n].rows))
                       for n, t in touched.items())


def test_a_streamed_decode_linear_reads_exactly_the_rows_of_its_weight() -> None:
    # pnm on OPT-125M: every FC weight is spread over every bank, layer-major (pim-tile-hbm).
    # The decode's normal-mode reads for the FC parts touch only rows of those weights (layer
    # 0's: the layer loop adds its row stride), and together every row of each, no other;
    # the embedding lookups read rows of their tables.
    module = import_model("opt-125m")
    *stages, convert = HpimLowerPass(policy="pnm").stages()
    for stage in stages:
        stage.apply(Context(), module)
    linears = {weight_name(op) for op in module.walk() if isinstance(op, pim.LinearOp)}
    placements = {
        op.sym_name.data: from_dict_attr(HbmPlacement, op.placement)
        for op in module.ops
        if isinstance(op, pim.WeightOp) and op.sym_name.data in linears
    }
    owned = {
        row: name
        for name, p in placements.items()
        for row in range(p.row_base, p.row_base + p.rows)
    }
    tables = {
        op.sym_name.data: from_dict_attr(HbmPlacement, op.placement)
        for op in module.ops
        if isinstance(op, pim.WeightOp) and op.sym_name.data.startswith("embed")
    }
    convert.apply(Context(), module)
    read_rows: set[int] = set()
    for stream in module.ops:
        if stream.name != "hbm_isa.stream":
            continue
        for read in stream.body.block.ops:
            if read.name == "hbm_isa.read" and read.attributes["part"].data != "attention":
                rows = range(read.row.value.data, read.row.value.data + read.rows.value.data)
                if "table" in read.attributes["data"].data:  # a lookup
                    table = tables[read.attributes["data"].data["table"].data]
                    assert table.row_base <= rows.start and rows.stop <= table.row_base + table.rows
                    continue
                assert all(row in owned for row in rows), f"{read} reads outside the weights"
                read_rows |= set(rows)
    assert read_rows == set(owned)


@pytest.mark.parametrize("policy", ["attacc", "pnm"])
def test_prefill_and_decode_find_the_weights_in_the_same_rows(policy: str) -> None:
    # No weight is tiled for an HBM GEMV: both phases spread every weight (and lay out the
    # KV cache) over every bank alike, so a request reads the weights where the other phase
    # left them.
    placements = {}
    for phase in ("decode", "prefill"):
        module = import_model("opt-125m", phase=phase, prompt=8)
        for stage in HpimLowerPass(policy=policy).stages(phase)[:3]:  # up to pim-tile-hbm
            stage.apply(Context(), module)
        placements[phase] = {
            op.sym_name.data: op.placement
            for op in module.ops
            if isinstance(op, (pim.WeightOp, pim.KVCacheOp)) and op.placement is not None
        }
    # The two embedding tables (the LM head is tied to the token table), q/k/v/o, fc1, fc2,
    # the K and V caches.
    assert placements["decode"] == placements["prefill"] and len(placements["decode"]) == 10
