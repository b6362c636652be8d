// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-schedule,pim-insert-pipeline' | filecheck %s --check-prefix=TILE
// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-schedule,pim-insert-pipeline{granularity=head}' | filecheck %s --check-prefix=HEAD
// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim{policy=serial},pim-tile-hbm,pim-schedule,pim-insert-pipeline' | filecheck %s --check-prefix=SERIAL
// RUN: hpim import llama-2-7b | hpim-opt -p 'convert-llm-to-pim{policy=serial kv-cache=hbm},pim-tile-hbm,pim-schedule,pim-insert-pipeline' | filecheck %s --check-prefix=LLAMA
// RUN: hpim import llama-3-8b | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-hbm,pim-schedule,pim-insert-pipeline' | filecheck %s --check-prefix=GQA

// hpim, tile granularity: K and V cross in 2 pieces (OPT-30B's K/V GEMVs hold 2 output groups
// per bank), and SRAM-PIM waits for each value right before its first use: it appends K
// before V is even waited for, so q.K^T and softmax overlap V's generation.
// TILE-LABEL: pim.layers 48
// TILE: %[[KT:.*]] = pim.transfer %{{.*}} from #pim.hbm to #pim.sram {stage = 2 : i64, tiles = 2 : i64}
// TILE-NEXT: pim.signal [[TK:[0-9]+]] : i64 on #pim.hbm {tiles = 2 : i64}
// TILE-NEXT: pim.wait [[TK]] : i64 on #pim.sram {tiles = 2 : i64}
// TILE-NEXT: pim.kv_append %[[KT]]
// TILE: pim.attention_scores
// TILE: pim.softmax
// TILE: pim.linear
// TILE: pim.transfer {{.*}}tiles = 2 : i64
// TILE: pim.wait {{[0-9]+}} : i64 on #pim.sram {tiles = 2 : i64}
// TILE-NEXT: pim.kv_append
// TILE: pim.attention_values

// head granularity: OPT-30B computes one head per channel, so K and V cross whole.
// HEAD-LABEL: pim.layers 48
// HEAD-NOT: tiles = 2
// HEAD: pim.yield

// serial: the attention stage starts only when Q, K and V have all arrived: the wait for V
// comes before the first op of the stage (the K append), and nothing crosses in pieces.
// SERIAL-LABEL: pim.layers 48
// SERIAL: pim.signal [[TK:[0-9]+]] : i64 on #pim.hbm
// SERIAL-NEXT: pim.wait [[TK]] : i64 on #pim.sram
// SERIAL-NEXT: pim.wait [[TQ:[0-9]+]] : i64 on #pim.sram
// SERIAL-NEXT: pim.wait [[TV:[0-9]+]] : i64 on #pim.sram
// SERIAL-NEXT: pim.kv_append
// SERIAL: pim.signal [[TQ]] : i64 on #pim.hbm
// SERIAL: pim.signal [[TV]] : i64 on #pim.hbm
// SERIAL-NOT: tiles = 2
// SERIAL: pim.yield

// serial LLaMA, KV cache in HBM: the hidden state is waited for before the layer loop that
// reads it (the loop has no stage; the first op of the transfer's stage comes after it), and
// the attention stage waits for both contexts before q.K^T: V's arrives after K's append,
// which waits for SRAM-PIM's RoPE of K, so waiting for it at the RoPE (V's transfer's own
// stage) would deadlock.
// LLAMA: pim.signal [[TX:[0-9]+]] : i64 on #pim.hbm
// LLAMA-NEXT: pim.wait [[TX]] : i64 on #pim.sram
// LLAMA-NEXT: pim.layers 32
// LLAMA: pim.rope
// LLAMA: pim.rope
// LLAMA: pim.signal [[TR:[0-9]+]] : i64 on #pim.sram
// LLAMA-NEXT: pim.wait [[TR]] : i64 on #pim.hbm
// LLAMA-NEXT: pim.kv_append
// LLAMA: pim.signal [[TK:[0-9]+]] : i64 on #pim.hbm
// LLAMA-NEXT: pim.wait [[TK]] : i64 on #pim.sram
// LLAMA-NEXT: pim.wait [[TV:[0-9]+]] : i64 on #pim.sram
// LLAMA-NEXT: pim.attention_scores
// LLAMA: pim.kv_append
// LLAMA-NEXT: pim.transfer
// LLAMA-NEXT: pim.signal [[TV]] : i64 on #pim.hbm
// LLAMA-NEXT: pim.attention_values

// GQA, KV cache in HBM: V's GEMV (pim.concurrent, channels 16..31) is issued right after K's
// (channels 0..15), before the HBM-PIM wait for SRAM-PIM's RoPE of K that K's append needs:
// in program order it would sit behind that wait and K's cache traffic.
// GQA-LABEL: pim.layers 32
// GQA: %[[X:.*]] = pim.transfer %{{.*}} from #pim.sram to #pim.hbm
// GQA: pim.linear %[[X]], %{{.*}}channel_lo = 0 : i64, channels_hi = 64 : i64
// GQA: pim.linear %[[X]], %{{.*}}channel_lo = 0 : i64, channels_hi = 16 : i64
// GQA-NOT: pim.wait {{[0-9]+}} : i64 on #pim.hbm
// GQA: %[[V:.*]] = pim.linear %[[X]], %{{.*}}pim.concurrent{{.*}}channel_lo = 16 : i64
// GQA-NEXT: pim.wait {{[0-9]+}} : i64 on #pim.hbm
// GQA-NEXT: pim.kv_append %{{.*}} into @key_cache
// GQA: pim.kv_append %[[V]] into @value_cache
