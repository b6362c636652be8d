// Other designs choose their policy through their hardware preset (docs/designs.md):
// `--hw ianus-like` partitions with `serial` unless `--policy` says otherwise; a machine
// without a `policy` key gets `hpim`.
// RUN: hpim compile opt-125m --hw ianus-like | filecheck %s --check-prefix=PRESET
// RUN: hpim compile opt-125m --hw ianus-like --policy hbm-only | filecheck %s --check-prefix=GIVEN
// RUN: hpim compile opt-125m --hw hpim | filecheck %s --check-prefix=NONE
// RUN: echo 'extends = "ianus-like"' > %t.toml
// RUN: echo 'policy = "ianus"' >> %t.toml
// RUN: not hpim compile opt-125m --hw %t.toml 2>&1 | filecheck %s --check-prefix=BAD
// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim{policy=attacc}' | filecheck %s --check-prefix=ATTACC
// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim{policy=pnm}' | filecheck %s --check-prefix=PNM
// RUN: hpim compile opt-125m --hw attacc-like | filecheck %s --check-prefix=ATTACC-HW
// RUN: hpim compile opt-125m --hw cxl-pnm-like | filecheck %s --check-prefix=PNM-HW

// PRESET: builtin.module attributes {{.*}}hpim.policy = "serial", hpim.hw = "ianus-like"}
// GIVEN: builtin.module attributes {{.*}}hpim.policy = "hbm-only", hpim.hw = "ianus-like"}
// NONE: builtin.module attributes {{.*}}hpim.policy = "hpim", hpim.hw = "hpim"}
// BAD: hpim compile: error: {{.*}}.toml: policy = 'ianus': unknown policy; registered: hpim, serial, hbm-only

// `attacc` (AttAcc): the FC layers on the compute side (SRAM-PIM) with their weights brought
// from HBM, attention in HBM-PIM beside the KV cache kept there, softmax on SRAM-PIM.
// ATTACC: builtin.module attributes {{.*}}pim.policy = "attacc"
// ATTACC: pim.kv_cache @key_cache {{.*}}{place = #pim.hbm}
// ATTACC: %[[W:.*]] = pim.get_weight @q_proj[{{.*}}] {place = #pim.hbm}
// ATTACC: %[[T:.*]] = pim.transfer %[[W]] from #pim.hbm to #pim.sram
// ATTACC: pim.linear {{.*}}, %[[T]] bias {{.*}} {place = #pim.sram}
// ATTACC: pim.attention_scores {{.*}}place = #pim.hbm}
// ATTACC: pim.softmax {{.*}} {place = #pim.sram}
// ATTACC: pim.attention_values {{.*}}place = #pim.hbm}

// `pnm` (CXL-PNM): every op on the near-memory engine (SRAM-PIM); weights and the KV cache
// stay in memory (HBM) and stream in.
// PNM: builtin.module attributes {{.*}}pim.policy = "pnm"
// PNM: pim.kv_cache @key_cache {{.*}}{place = #pim.hbm}
// PNM: pim.linear {{.*}} {place = #pim.sram}
// PNM: pim.kv_append {{.*}} {place = #pim.hbm}
// PNM: pim.attention_scores {{.*}}place = #pim.sram}
// PNM: pim.attention_values {{.*}}place = #pim.sram}
// From here on (the output projection, the FFN, the LM head), nothing computes in HBM-PIM.
// PNM-NOT: place = #pim.hbm} : (tensor<1x

// ATTACC-HW: builtin.module attributes {{.*}}hpim.policy = "attacc", hpim.hw = "attacc-like"}
// PNM-HW: builtin.module attributes {{.*}}hpim.policy = "pnm", hpim.hw = "cxl-pnm-like"}
