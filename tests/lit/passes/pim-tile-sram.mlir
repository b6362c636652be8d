// RUN: hpim import opt-6.7b | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-sram' | filecheck %s --check-prefix=EQUAL
// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-sram' | filecheck %s --check-prefix=PHASES
// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim,pim-tile-sram{max-context=256}' | filecheck %s --check-prefix=SPLIT
// RUN: hpim import llama-3-8b | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-sram' | filecheck %s --check-prefix=GQA
// RUN: hpim import opt-125m | not hpim-opt -p 'convert-llm-to-pim,pim-tile-sram' 2>&1 | filecheck %s --check-prefix=FIT

// The hpim machine has 32 SRAM-PIM cores.

// heads == cores: OPT-6.7B's 32 heads, one per core.
// EQUAL-LABEL: pim.layers 32
// EQUAL: pim.attention_scores {{.*}}tile = {case = "one-per-core", cores = 32 : i64, heads = 32 : i64, kv_heads = 32 : i64, heads_per_core = 1 : i64, kv_heads_per_core = 1 : i64, cores_per_head = 1 : i64}
// EQUAL: pim.layer_norm {{.*}}tile = {case = "vector", cores = 32 : i64}

// heads > cores: OPT-30B's 56 heads in two phases of 28 cores.
// PHASES: pim.attention_scores {{.*}}tile = {case = "phases", cores = 28 : i64, heads = 56 : i64, kv_heads = 56 : i64, heads_per_core = 2 : i64, kv_heads_per_core = 2 : i64, cores_per_head = 1 : i64}
// PHASES: pim.softmax {{.*}}tile = {case = "phases"

// cores > heads: OPT-125M's 12 heads each over 2 cores (24 in use); the KV cache resident in
// the cores at a 256-token context: 12 layers x 64 x 256 x 2 B per core and cache.
// SPLIT: pim.kv_cache @key_cache {{.*}}placement = {cores = 24 : i64, max_context = 256 : i64, bytes_per_core = 196608 : i64, on = "sram"}
// SPLIT: pim.attention_scores {{.*}}tile = {case = "split", cores = 24 : i64, heads = 12 : i64, kv_heads = 12 : i64, heads_per_core = 1 : i64, kv_heads_per_core = 1 : i64, cores_per_head = 2 : i64}

// Grouped-query attention: LLaMA-3-8B's 32 query heads, one per core; the 4 query heads of a group share one
// key/value head, so each core holds one K/V head.
// GQA: pim.attention_scores {{.*}}tile = {case = "one-per-core", cores = 32 : i64, heads = 32 : i64, kv_heads = 8 : i64, heads_per_core = 1 : i64, kv_heads_per_core = 1 : i64

// At OPT-125M's full 2048 positions the cache needs 6 x the PIM macros.
// FIT: hpim-opt: error: the KV cache does not fit in SRAM-PIM at context 2048: needs 3,145,728 bytes per core (@key_cache 1,572,864, @value_cache 1,572,864), 524,288 available per core in the PIM macros (place it in HBM: kv-cache=hbm)
