// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim,pim-schedule' | filecheck %s
// RUN: hpim import opt-125m | not hpim-opt -p pim-schedule 2>&1 | filecheck %s --check-prefix=ORDER

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
