"""`pim-tile-sram`'s attention tile (`attention_tile`): how many query and key/value heads
each core serves, by hand and as a property of the layout the ISA lowering gives a core
(`_head_slice`: core k's key/value heads from `k * heads_per_core // group` on)."""

from hypothesis import given
from hypothesis import strategies as st

from hpim_ir.passes.pim_tile_sram import attention_tile


def test_the_three_cases_by_hand() -> None:
    # 32 heads on 32 cores: one each. 40 on 32: two phases (ceil(40 / 32) = 2 heads a
    # core, on ceil(40 / 2) = 20 cores). 12 on 32: each head split over 32 // 12 = 2 cores.
    one = attention_tile(32, 32, 32)
    assert (one.case, one.cores, one.heads_per_core, one.kv_heads_per_core) == ("one-per-core", 32, 1, 1)
    phases = attention_tile(40, 40, 32)
    assert (phases.case, phases.cores, phases.heads_per_core, phases.kv_heads_per_core) == (
        "phases", 20, 2, 2,
    )
    split = attention_tile(12, 12, 32)
    assert (split.case, split.cores, split.cores_per_head) == ("split", 24, 2)


def test_a_core_whose_heads_straddle_two_groups_holds_both_key_value_heads() -> None:
    # 6 query heads in 2 groups of 3 on 4 cores: ceil(6 / 4) = 2 heads a core on 3 cores;
    # core 1 runs heads 2 and 3, which read key/value heads 0 and 1 (ceil(2 / 3) = 1 would
    # leave head 3's keys off the core).
    tile = attention_tile(6, 2, 4)
    assert (tile.cores, tile.heads_per_core, tile.kv_heads_per_core) == (3, 2, 2)
    # LLaMA-2-70B (64 heads, 8 groups of 8) on 32 cores: 2 heads a core, in one group.
    assert attention_tile(64, 8, 32).kv_heads_per_core == 1


@given(
    kv_heads=st.integers(1, 16), group=st.integers(1, 8), cores=st.integers(1, 64),
)
def test_every_core_holds_the_key_value_heads_its_queries_read(kv_heads, group, cores) -> None:
    heads = kv_heads * group
    tile = attention_tile(heads, kv_heads, cores)
    if tile.cores_per_head > 1:
        return  # a split head: one query head and its key/value head a core
    for core in range(tile.cores):
        first = core * tile.heads_per_core // group
        queries = range(core * tile.heads_per_core, min((core + 1) * tile.heads_per_core, heads))
        assert queries, "a core in use runs a head"
        for head in queries:
            assert first <= head // group < first + tile.kv_heads_per_core
    assert tile.kv_heads_per_core <= min(kv_heads, tile.heads_per_core)
