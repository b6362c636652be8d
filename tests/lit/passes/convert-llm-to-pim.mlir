// RUN: hpim import opt-125m | hpim-opt -p convert-llm-to-pim | filecheck %s --check-prefix=HPIM
// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim{policy=hbm-only}' | filecheck %s --check-prefix=HBMONLY
// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim{policy=serial}' | filecheck %s --check-prefix=SERIAL
// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm}' | filecheck %s --check-prefix=KVHBM
// RUN: hpim import opt-125m --phase prefill --prompt 8 | hpim-opt -p convert-llm-to-pim | filecheck %s --check-prefix=PREFILL
// RUN: hpim import opt-125m | not hpim-opt -p 'convert-llm-to-pim{policy=nope}' 2>&1 | filecheck %s --check-prefix=BAD
// RUN: hpim import opt-125m | not hpim-opt -p 'convert-llm-to-pim{policy=hbm-only kv-cache=sram}' 2>&1 | filecheck %s --check-prefix=CONTRA

// hpim (decode): weight GEMVs on HBM-PIM, attention and nonlinear ops on SRAM-PIM, a
// transfer at every crossing; the KV cache resident in SRAM-PIM by default.
// HPIM: builtin.module attributes {{.*}}pim.policy = "hpim", pim.overlap = true
// HPIM: pim.weight @q_proj layered {{.*}}place = #pim.hbm}
// HPIM: pim.weight @attn_norm layered {{.*}}place = #pim.sram
// HPIM: pim.kv_cache @key_cache : tensor<12x2048x768xf16> {place = #pim.sram}
// HPIM-LABEL: func.func @decode_step
// HPIM: %[[E:.*]] = pim.embedding {{.*}}place = #pim.hbm
// HPIM: pim.transfer %[[E]] from #pim.hbm to #pim.sram
// HPIM: %[[N:.*]] = pim.layer_norm {{.*}}place = #pim.sram
// HPIM: %[[T:.*]] = pim.transfer %[[N]] from #pim.sram to #pim.hbm
// HPIM: %[[Q:.*]] = pim.linear %[[T]], {{.*}}place = #pim.hbm
// HPIM: %[[K:.*]] = pim.linear %[[T]], {{.*}}place = #pim.hbm
// HPIM: %[[KS:.*]] = pim.transfer %[[K]] from #pim.hbm to #pim.sram
// HPIM: pim.kv_append %[[KS]] into @key_cache{{.*}}place = #pim.sram
// HPIM: pim.attention_scores {{.*}}place = #pim.sram
// HPIM: pim.softmax {{.*}}place = #pim.sram
// HPIM-NOT: llm.

// kv-cache=hbm: K and V are appended in HBM and the whole context streams to SRAM-PIM.
// KVHBM: pim.kv_cache @key_cache : tensor<12x2048x768xf16> {place = #pim.hbm}
// KVHBM-LABEL: func.func @decode_step
// KVHBM: %[[KC:.*]] = pim.kv_append %{{.*}} into @key_cache{{.*}}place = #pim.hbm
// KVHBM: pim.transfer %[[KC]] from #pim.hbm to #pim.sram : tensor<?x768xf16> -> tensor<?x768xf16>

// hbm-only (AttAcc-style): the attention products run in HBM-PIM beside the KV cache.
// HBMONLY-LABEL: func.func @decode_step
// HBMONLY: pim.attention_scores {{.*}}place = #pim.hbm
// HBMONLY: pim.softmax {{.*}}place = #pim.sram
// HBMONLY: pim.attention_values {{.*}}place = #pim.hbm

// serial: hpim's placement, no overlap.
// SERIAL: pim.policy = "serial", pim.overlap = false
// SERIAL: pim.attention_scores {{.*}}place = #pim.sram

// Prefill: the GEMMs on SRAM-PIM's TCUs, reading their weights from HBM through the link;
// a matrix the decode step multiplies in HBM-PIM keeps that GEMV's layout (`gemv_layout`).
// PREFILL: pim.weight @q_proj layered {{.*}}place = #pim.hbm, gemv_layout}
// PREFILL: pim.weight @q_proj.bias layered {{.*}}place = #pim.sram}
// PREFILL-LABEL: func.func @prefill
// PREFILL: %[[W:.*]] = pim.get_weight @q_proj{{.*}}place = #pim.hbm
// PREFILL: %[[WS:.*]] = pim.transfer %[[W]] from #pim.hbm to #pim.sram
// PREFILL: pim.linear %{{.*}}, %[[WS]] {{.*}}place = #pim.sram

// BAD: unknown policy 'nope'; registered: hpim, serial, hbm-only

// Attention in HBM-PIM reads the cache where it runs: a cache resident in SRAM-PIM contradicts
// the policy, and the message names both options.
// CONTRA: policy 'hbm-only' computes attention (q.K^T, s.V) in HBM-PIM beside the KV cache, which needs kv-cache=hbm; kv-cache=sram contradicts it
