// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim,pim-schedule' | filecheck %s
// RUN: hpim import opt-125m | not hpim-opt -p pim-schedule 2>&1 | filecheck %s --check-prefix=ORDER
// RUN: hpim import llama-3-8b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-schedule' | filecheck %s --check-prefix=GQA
// RUN: hpim import llama-2-7b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-schedule' | filecheck %s --check-prefix=MHA

// A stage counts the subsystem crossings before an op within its block. In a layer: the
// LayerNorm (SRAM) is stage 0; its transfer to HBM and the Q/K/V GEMVs stage 1; the
// attention on SRAM stage 2; the output projection stage 3; the residual add and the second
// LayerNorm stage 4; FC1 5, ReLU 6, FC2 7, the last residual add 8.

// CHECK-LABEL: pim.layers 12
// CHECK: pim.layer_norm {{.*}}stage = 0 : i64
// CHECK: pim.transfer {{.*}}from #pim.sram to #pim.hbm {stage = 1 : i64}
// CHECK: pim.linear {{.*}}stage = 1 : i64
// CHECK: pim.attention_scores {{.*}}stage = 2 : i64
// CHECK: pim.attention_values {{.*}}stage = 2 : i64
// CHECK: pim.linear {{.*}}stage = 3 : i64
// CHECK: pim.layer_norm {{.*}}stage = 4 : i64
// CHECK: pim.relu {{.*}}stage = 6 : i64
// CHECK: pim.add {{.*}}stage = 8 : i64
// CHECK: pim.yield

// ORDER: hpim-opt: error: module has no pim.overlap attribute; run convert-llm-to-pim first

// pim.concurrent: LLaMA-3-8B's V GEMV (channels 16..31, `pim-tile-hbm`) reads the input K's
// GEMV (channels 0..15) reads, on disjoint channels: it may run beside it. Q (all 64
// channels) and K (inside Q's channels) may not.
// GQA-LABEL: pim.layers 32
// GQA: pim.linear %{{.*}} {place = #pim.hbm, tile = {{{.*}}channel_lo = 0 : i64, channels_hi = 64 : i64
// GQA: pim.linear %{{.*}} {place = #pim.hbm, tile = {{{.*}}channel_lo = 0 : i64, channels_hi = 16 : i64
// GQA: pim.linear %{{.*}} {pim.concurrent, place = #pim.hbm, tile = {{{.*}}channel_lo = 16 : i64, channels_hi = 16 : i64
// GQA-NOT: pim.concurrent
// GQA: pim.yield

// MHA (LLaMA-2-7B): Q, K and V each over all 64 channels, nothing concurrent.
// MHA-NOT: pim.concurrent
// MHA: pim.yield
