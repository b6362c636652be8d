// RUN: hpim import opt-125m | hpim-opt -p llm-annotate | filecheck %s --check-prefix=DECODE
// RUN: hpim import opt-125m --phase prefill --prompt 16 | hpim-opt -p llm-annotate | filecheck %s --check-prefix=PREFILL

// One token: matrix products are GEMVs. A prompt: GEMMs. Stored-tensor reads are memory work.

// DECODE-LABEL: func.func @decode_step
// DECODE: llm.embedding {{.*}}llm.kind = "memory"
// DECODE: llm.layer_norm {{.*}}llm.kind = "nonlinear"
// DECODE: llm.linear {{.*}}llm.kind = "gemv"
// DECODE: llm.kv_append {{.*}}llm.kind = "memory"
// DECODE: llm.attention_scores {{.*}}llm.kind = "gemv"
// DECODE: llm.softmax {{.*}}llm.kind = "nonlinear"
// DECODE: llm.attention_values {{.*}}llm.kind = "gemv"

// PREFILL-LABEL: func.func @prefill
// PREFILL: llm.linear {{.*}}llm.kind = "gemm"
// PREFILL: llm.attention_scores {{.*}}llm.kind = "gemm"
// PREFILL-NOT: "gemv"
