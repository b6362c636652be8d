"""Head-wise GEMVs fill the banks (`pim-tile-hbm{fill}`), side by side, and a GEMV on channels
disjoint from the one before runs beside it (`pim-schedule` marks it `pim.concurrent`,
`pim-insert-pipeline` issues GQA's V before K's cache traffic): the tile, the placement, the
lowered commands, the timing and the values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from hpim_ir import import_model
from hpim_ir.dialects import pim
from hpim_ir.errors import HpimError
from hpim_ir.frontend import build_module, config_from_dict
from hpim_ir.hardware import load_hardware
from hpim_ir.opt import verify_located
from hpim_ir.passes.convert_llm_to_pim import POLICIES, ConvertLlmToPimPass
from hpim_ir.passes.hpim_lower import HpimLowerPass
from hpim_ir.passes.llm_annotate import LlmAnnotatePass
from hpim_ir.passes.pim_insert_pipeline import PimInsertPipelinePass
from hpim_ir.passes.pim_schedule import CONCURRENT_ATTR, PimScheduleAnalysisPass
from hpim_ir.passes.pim_tile_hbm import (
    FILL_BANKS,
    GemvTile,
    HbmPlacement,
    PimTileHbmPass,
    from_dict_attr,
    gemv_tile,
)
from hpim_ir.sim.hbm.program import HbmOp
from hpim_ir.sim.program import MachineProgram
from hpim_ir.sim.scheduler import simulate_machine
from hpim_ir.weights import random_weights, save_model
from tests.test_functional_isa import CONFIGS, Model, assert_computes_the_model, machine_file

HPIM = load_hardware("hpim").hbm  # 64 channels of 64 banks, DRAM rows of 512 FP16


def test_gqa_kv_tile_fills_the_banks() -> None:
    # LLaMA-3-8B's K: 8 heads of 128 rows, 4096 inputs. Spread over every channel (MHA's
    # rule) each head takes 64 // 8 = 8 channels of 16 rows: 16 of a channel's 64 banks.
    # Filling the banks, each takes min(8, ceil(128 / 64)) = 2 channels of 64 rows: 16
    # channels, one output group per bank either way; 4096 / 512 = 8 segments of 32 columns.
    spread = gemv_tile(1024, 4096, HPIM, heads=8)
    assert (spread.channels, spread.rows_hi, spread.groups) == (64, 16, 1)
    filled = gemv_tile(1024, 4096, HPIM, heads=8, fill_banks=True)
    assert filled == GemvTile(
        scheme="head", in_features=4096, out_features=1024, channel_lo=0, channels_hi=16,
        rows_hi=64, channels_lo=0, rows_lo=0, heads_per_channel=0, channels_per_head=2,
        segments=8, segment_cols=32, last_cols=32, groups=1,
    )
    assert (filled.channel_hi, filled.dram_rows) == (16, 8)
    # A head of 80 rows needs 2 channels (40 rows each); of 256, 4 (64 each). With 32 heads
    # of 256 there are only 64 // 32 = 2 channels per head: 128 rows, 2 groups, as spread.
    narrow = gemv_tile(8 * 80, 4096, HPIM, 8, True)
    assert (narrow.channels, narrow.rows_hi, narrow.groups) == (16, 40, 1)
    wide = gemv_tile(4 * 256, 4096, HPIM, 4, True)
    assert (wide.channels, wide.rows_hi, wide.channels_per_head) == (16, 64, 4)
    many = gemv_tile(32 * 256, 4096, HPIM, 32, True)
    assert many == gemv_tile(32 * 256, 4096, HPIM, 32)


@settings(max_examples=200, deadline=None)
@given(
    heads=st.integers(1, 64),
    head_dim=st.sampled_from([8, 40, 64, 80, 96, 128, 256]),
    inputs=st.integers(1, 5000),
)
def test_filling_keeps_the_groups_on_fewest_channels(heads: int, head_dim: int, inputs: int) -> None:
    # Every row is computed once, on no more output groups per bank than spread over every
    # channel; where filling narrows a head, one channel fewer per head would need more.
    spread = gemv_tile(heads * head_dim, inputs, HPIM, heads)
    filled = gemv_tile(heads * head_dim, inputs, HPIM, heads, fill_banks=True)
    rows = filled.channels_hi * filled.rows_hi + filled.channels_lo * filled.rows_lo
    assert rows == heads * head_dim and filled.channels <= spread.channels
    assert filled.groups == spread.groups
    if 1 < filled.channels_per_head < spread.channels_per_head:
        fewer = -(-head_dim // (filled.channels_per_head - 1))
        assert -(-fewer // HPIM.banks_per_channel) > filled.groups


def gqa_config(heads: int, kv_heads: int, head_dim: int, layers: int = 1) -> dict:
    return {
        "model_type": "llama", "vocab_size": 256, "hidden_size": heads * head_dim,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "intermediate_size": 512,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
    }


def scheduled(module: ModuleOp, fill: str = FILL_BANKS[0]) -> ModuleOp:
    """`module` after `pim-tile-hbm{fill}`, `pim-schedule` and `pim-insert-pipeline` (KV cache
    in HBM)."""
    for one in (
        LlmAnnotatePass(), ConvertLlmToPimPass(kv_cache="hbm"), PimTileHbmPass(fill=fill),
        PimScheduleAnalysisPass(), PimInsertPipelinePass(),
    ):
        one.apply(Context(), module)
    return module


def projections(config: dict, fill: str = FILL_BANKS[0]) -> dict[str, tuple]:
    """The decode step's Q, K and V GEMVs with their weights' declarations, by weight name
    (`scheduled`)."""
    module = scheduled(build_module(config_from_dict(config, "gqa", "gqa"), "decode", prompt=1), fill)
    decls = {op.sym_name.data: op for op in module.ops if op.name == "pim.weight"}
    found = {}
    for op in module.walk():
        if op.name == "pim.linear" and op.weight.owner.weight.string_value() in decls:
            name = op.weight.owner.weight.string_value()
            found[name] = (op, decls[name])
    return found


def test_k_and_v_side_by_side_and_v_concurrent() -> None:
    # 32 query heads and 8 KV heads of 128 (LLaMA-3-8B's attention): K on channels 0..15, V
    # on 16..31, both placed there; V alone is concurrent (Q covers every channel).
    found = projections(gqa_config(32, 8, 128))
    names = ("q_proj", "k_proj", "v_proj")
    tiles = [from_dict_attr(GemvTile, found[name][0].tile) for name in names]
    assert [(t.channel_lo, t.channels) for t in tiles] == [(0, 64), (0, 16), (16, 16)]
    for name, tile in zip(names, tiles):
        placement = from_dict_attr(HbmPlacement, found[name][1].placement)
        assert (placement.channel_lo, placement.channels) == (tile.channel_lo, tile.channels)
    assert [CONCURRENT_ATTR in found[name][0].attributes for name in names] == [False, False, True]


def test_kv_that_do_not_fit_side_by_side_share_channels() -> None:
    # 24 KV heads of 128: each over min(64 // 24, 2) = 2 channels, 48 channels for K; V's 48
    # do not fit beside them, so V starts at channel 0 again and is not concurrent.
    found = projections(gqa_config(48, 24, 128))
    k, v = (from_dict_attr(GemvTile, found[name][0].tile) for name in ("k_proj", "v_proj"))
    assert (k.channel_lo, k.channels, v.channel_lo, v.channels) == (0, 48, 0, 48)
    assert CONCURRENT_ATTR not in found["v_proj"][0].attributes


def test_fill_gqa_keeps_the_paper_spread_for_mha() -> None:
    # `fill=gqa`: 16 heads of 64 on 64 channels: each head over 4 channels of 16 rows, from
    # channel 0, though its 64 rows would fill one channel's banks.
    found = projections(gqa_config(16, 16, 64), fill="gqa")
    for name in ("q_proj", "k_proj", "v_proj"):
        tile = from_dict_attr(GemvTile, found[name][0].tile)
        assert (tile.channel_lo, tile.channels, tile.rows_hi) == (0, 64, 16)
        assert CONCURRENT_ATTR not in found[name][0].attributes


def test_fill_all_puts_mha_heads_on_full_channels_side_by_side() -> None:
    # `fill=all` (the default): the 16 heads of 64 rows each take min(64 // 16, ceil(64 / 64)) = 1 channel
    # of 64 rows (every bank one row): Q on channels 0..15, K on 16..31, V on 32..47, and K
    # and V, disjoint from the GEMV before them, are issued concurrently.
    found = projections(gqa_config(16, 16, 64), fill="all")
    names = ("q_proj", "k_proj", "v_proj")
    tiles = [from_dict_attr(GemvTile, found[name][0].tile) for name in names]
    assert [(t.channel_lo, t.channels, t.rows_hi) for t in tiles] == [
        (0, 16, 64), (16, 16, 64), (32, 16, 64),
    ]
    assert [CONCURRENT_ATTR in found[name][0].attributes for name in names] == [False, True, True]


def test_fill_none_spreads_gqa_like_mha() -> None:
    # `fill=none`: LLaMA-3-8B's K heads spread as MHA's are, each over 64 // 8 = 8 channels
    # of 16 rows, and V over the same channels.
    found = projections(gqa_config(32, 8, 128), fill="none")
    for name in ("k_proj", "v_proj"):
        tile = from_dict_attr(GemvTile, found[name][0].tile)
        assert (tile.channel_lo, tile.channels, tile.rows_hi) == (0, 64, 16)
        assert CONCURRENT_ATTR not in found[name][0].attributes


def test_an_unknown_fill_is_named() -> None:
    with pytest.raises(HpimError, match="pim-tile-hbm: fill must be one of all, gqa, none, got 'some'"):
        projections(gqa_config(16, 16, 64), fill="some")


def lowered(config: dict) -> ModuleOp:
    """The decode step of `config` compiled for `hpim` with the KV cache in HBM."""
    module = build_module(config_from_dict(config, "gqa", "gqa"), "decode", prompt=1)
    HpimLowerPass(kv_cache="hbm").apply(Context(), module)
    return module


def test_lowered_v_gemv_before_the_wait_for_k() -> None:
    # LLaMA-3-8B's attention, cache in HBM. V's GEMV on channels 16..31: per segment of 512
    # inputs (8 of them) one load_gb and one gemv of 1 group x 32 columns, from V's first
    # row (K's 8 rows per bank follow Q's 8, so V's start at row 16), then one readout of
    # 64 results x 2 B / 32 B = 4 bursts; all of it before the layer's first hbm.wait after
    # K's GEMV (the RoPE'd K that K's cache append writes).
    stream = next(
        op for op in lowered(gqa_config(32, 8, 128)).ops
        if op.name == "hbm_isa.stream" and op.properties["section"].data == "layers"
    )
    ops = list(stream.body.block.ops)

    def on(lo: int, hi: int) -> list[int]:
        return [
            i for i, op in enumerate(ops)
            if hasattr(op, "ch_lo") and (op.ch_lo.value.data, op.ch_hi.value.data) == (lo, hi)
        ]

    k, v = on(0, 16), on(16, 32)
    assert [ops[i].name for i in v] == ["hbm_isa.load_gb", "hbm_isa.gemv"] * 8 + ["hbm_isa.readout"]
    assert [ops[i].row.value.data for i in v if ops[i].name == "hbm_isa.gemv"] == list(range(16, 24))
    assert ops[v[-1]].n.value.data == 4
    assert len(k) == 17 and k[-1] < v[0]
    waits = [i for i, op in enumerate(ops) if op.name == "hbm_isa.wait" and i > k[-1]]
    assert v[-1] < waits[0]
    assert ops[waits[0] + 1].name == "hbm_isa.write"


def first_gemv_starts(module: ModuleOp, *channels: tuple[int, int]) -> list[int]:
    """The cycle each GEMV on channels `lo..hi` (one per pair) starts on its first channel, in
    a decode step of `module` simulated on `hpim` at context 16."""
    program = MachineProgram.from_module(module)
    result = simulate_machine(program, load_hardware("hpim"), ctx=16)
    records, timeline = result.step.hbm.records, result.hbm.timeline
    gemv = records["op"] == HbmOp.GEMV

    def first_start(lo: int, hi: int) -> int:
        index = np.flatnonzero(gemv & (records["ch_lo"] == lo) & (records["ch_hi"] == hi))[0]
        return int(timeline["start"][(timeline["record"] == index) & (timeline["channel"] == lo)][0])

    return [first_start(lo, hi) for lo, hi in channels]


def test_v_gemv_runs_while_k_gemv_runs() -> None:
    # On the simulated machine, V's channels start V's GEMV when K's channels start K's:
    # both follow Q on every channel, which ends on all channels at once. Before, V waited
    # for K's GEMV, SRAM-PIM's RoPE of K and K's cache write.
    k, v = first_gemv_starts(lowered(gqa_config(32, 8, 128)), (0, 16), (16, 32))
    assert v == k


def test_mha_q_k_and_v_gemvs_run_at_once() -> None:
    # OPT-125M (no RoPE: nothing for HBM-PIM to wait on between K and V), cache in HBM: its
    # 12 heads fill channels 0..11 (Q), 12..23 (K) and 24..35 (V), and V's GEMV is issued
    # ahead of K's cache append and reads, which use every channel. Every value is still
    # defined before its use (V's weight and bias reads move with it; `verify_located` checks
    # dominance, xDSL's verifier does not), and all three GEMVs start at once.
    module = scheduled(import_model("opt-125m"))
    verify_located(module, {})
    layer = next(op for op in module.walk() if isinstance(op, pim.LayersOp)).body.block
    order = [
        op.weight.owner.weight.string_value() if isinstance(op, pim.LinearOp) else "append"
        for op in layer.ops if isinstance(op, pim.LinearOp | pim.KVAppendOp)
    ]
    assert order[:5] == ["q_proj", "k_proj", "v_proj", "append", "append"]
    module = import_model("opt-125m")
    HpimLowerPass(kv_cache="hbm").apply(Context(), module)
    q, k, v = first_gemv_starts(module, (0, 12), (12, 24), (24, 36))
    assert q == k == v


# A machine on which the tiny LLaMA's 2 KV heads of 8 fill the banks over several channels:
# 8 channels of 4 banks, so each head goes over min(8 // 2, ceil(8 / 4)) = 2 channels of 4
# rows, K on channels 0..3 and V on 4..7 (on the tiny machine of test_functional_isa, 2
# channels, each head has a channel of its own and nothing changes).
FILLED_MACHINE = """\
extends = "hpim"
description = "8 channels of 4 banks: GQA's K and V fill the banks side by side"
[hbm]
stacks = 1
channels = 8
pseudo_channels = 2
ranks = 1
bank_groups = 1
banks_per_group = 2
columns = 8
global_buffer_bytes = 256
[sram]
cores = 4
[sram.noc]
mesh_cols = 2
"""


def saved_model(factory: pytest.TempPathFactory, name: str) -> Model:
    """`CONFIGS[name]` with random weights on disk (test_functional_isa's `Model`)."""
    folder = factory.mktemp(name)
    config = config_from_dict(CONFIGS[name], name, name)
    save_model(folder, CONFIGS[name], random_weights(config, seed=11, std=0.2))
    return Model(folder, name)


@pytest.fixture(scope="module")
def mha_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return saved_model(tmp_path_factory, "opt-post-ln")


@pytest.mark.parametrize("kv", ["sram", "hbm"])
def test_mha_heads_filling_the_banks_compute_the_model(
    mha_model: Model, tmp_path_factory: pytest.TempPathFactory, kv: str
) -> None:
    # `fill-banks=all` on 8 channels of 16 banks: OPT's 4 heads of 16 rows each take
    # min(8 // 4, ceil(16 / 16)) = 1 channel instead of 2: Q on channels 0..3, K on 4..7,
    # V on 0..3 again (no room beside K). The values still agree (the model and its
    # tolerance: tests/test_functional_isa.py).
    machine = FILLED_MACHINE.replace("banks_per_group = 2", "banks_per_group = 8")
    hw = machine_file(tmp_path_factory, "sixteen-banks", machine)
    tiles = _projection_tiles(mha_model, hw, "hpim", kv, fill="all")
    heads = [(t.channel_lo, t.channels) for t in tiles if t.scheme == "head"]
    assert heads == [(0, 4), (4, 4), (0, 4)]  # Q, K, V
    module = build_module(mha_model.config, "decode", prompt=1)
    HpimLowerPass(hw=hw, kv_cache=kv, fill_banks="all").apply(Context(), module)
    assert_computes_the_model(mha_model, mha_model.run(module, hw))


@pytest.fixture(scope="module")
def gqa_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return saved_model(tmp_path_factory, "llama-gqa")


@pytest.fixture(scope="module")
def filled_machine(tmp_path_factory: pytest.TempPathFactory) -> str:
    return machine_file(tmp_path_factory, "filled", FILLED_MACHINE)


@pytest.mark.parametrize("kv", ["sram", "hbm"])
@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "no-pipeline"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_filled_banks_compute_the_model(
    gqa_model: Model, filled_machine: str, policy: str, pipeline: bool, kv: str
) -> None:
    # Every policy and cache placement: the program computes the model (the reference and
    # the llm interpreter, test_functional_isa's tolerance) with K and V side by side.
    module = build_module(gqa_model.config, "decode", prompt=1)
    lower = HpimLowerPass(hw=filled_machine, policy=policy, pipeline=pipeline, kv_cache=kv)
    try:
        lower.apply(Context(), module)
    except HpimError as error:  # attention in HBM-PIM beside a cache in SRAM-PIM
        assert "contradicts it" in str(error)
        return
    kv_tiles = {
        (tile.channel_lo, tile.channels)
        for tile in _projection_tiles(gqa_model, filled_machine, policy, kv)
        if tile.out_features == 16  # 2 KV heads of 8
    }
    # AttAcc and PNM run the FC layers off HBM-PIM (GPU, near-memory engine): no GEMV tile.
    assert kv_tiles == (set() if policy in ("attacc", "pnm") else {(0, 4), (4, 4)})
    assert_computes_the_model(gqa_model, gqa_model.run(module, filled_machine))


def _projection_tiles(
    model: Model, hw: str, policy: str, kv: str, fill: str = "gqa"
) -> list[GemvTile]:
    module = build_module(model.config, "decode", prompt=1)
    for one in (
        LlmAnnotatePass(), ConvertLlmToPimPass(policy=policy, kv_cache=kv),
        PimTileHbmPass(hw=hw, fill=fill),
    ):
        one.apply(Context(), module)
    return [
        from_dict_attr(GemvTile, op.tile)
        for op in module.walk()
        if op.name == "pim.linear" and op.tile is not None
    ]
