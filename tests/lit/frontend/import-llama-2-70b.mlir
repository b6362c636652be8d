// RUN: hpim import llama-2-70b | filecheck %s

// LLaMA-2-70B: RMSNorm, rotary positions, SwiGLU FFN, grouped-query attention with 64 query
// heads sharing 8 key/value heads (K/V projections and caches 1024 wide), no biases, and an
// LM head untied from the embeddings.

// CHECK: llm.weight @embed_tokens : tensor<32000x8192xf16>
// CHECK-NOT: @embed_positions
// CHECK: llm.weight @q_proj layered : tensor<80x8192x8192xf16>
// CHECK: llm.weight @k_proj layered : tensor<80x1024x8192xf16> {hf_name = "model.layers.{layer}.self_attn.k_proj.weight"}
// CHECK: llm.weight @v_proj layered : tensor<80x1024x8192xf16>
// CHECK: llm.weight @gate_proj layered : tensor<80x28672x8192xf16>
// CHECK: llm.weight @down_proj layered : tensor<80x8192x28672xf16>
// CHECK-NOT: .bias
// CHECK: llm.weight @lm_head : tensor<32000x8192xf16> {hf_name = "lm_head.weight"}
// CHECK: llm.kv_cache @key_cache : tensor<80x4096x1024xf16>
// CHECK-LABEL: func.func @decode_step
// CHECK-SAME: (%{{.*}}: tensor<1xi32>, %[[POS:.*]]: index)
// CHECK: llm.layers 80
// CHECK-NEXT: ^{{.*}}(%[[L:.*]]: index, %[[H:.*]]: tensor<1x8192xf16>):
// Pre-norm: RMSNorm first, then the projections of the normalized input.
// CHECK: %[[N:.*]] = llm.rms_norm %[[H]], %{{.*}} {epsilon = 1.000000e-05 : f32}
// CHECK: %[[Q:.*]] = llm.linear %[[N]]
// CHECK: %[[K:.*]] = llm.linear %[[N]], {{.*}} -> tensor<1x1024xf16>
// CHECK: %[[QR:.*]] = llm.rope %[[Q]], %[[POS]] {num_heads = 64 : i64, theta = 1.000000e+04 : f32}
// CHECK: %[[KR:.*]] = llm.rope %[[K]], %[[POS]] {num_heads = 8 : i64
// CHECK: %[[KC:.*]] = llm.kv_append %[[KR]] into @key_cache[%[[L]]] at %[[POS]] : tensor<1x1024xf16> -> tensor<?x1024xf16>
// CHECK: llm.attention_scores %[[QR]], %[[KC]] {num_heads = 64 : i64, num_kv_heads = 8 : i64, scale = 0.0883883461 : f32}
// CHECK: %[[G:.*]] = llm.silu
// CHECK: %[[U:.*]] = llm.linear
// CHECK: llm.mul %[[G]], %[[U]]
// CHECK: llm.yield
// CHECK: llm.rms_norm
// CHECK: %[[HEAD:.*]] = llm.get_weight @lm_head
// CHECK: llm.linear %{{.*}}, %[[HEAD]] {{.*}} -> tensor<1x32000xf16>
