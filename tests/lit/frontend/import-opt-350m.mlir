// RUN: hpim import opt-350m | filecheck %s

// OPT-350m is the odd one of its family: post-LayerNorm (normalize after the residual add),
// no final LayerNorm, and 512-wide token embeddings projected in to and out of the 1024-wide
// decoder. Positions are learned with OPT's offset of 2; the FFN is fc1 -> ReLU -> fc2 with
// biases; the LM head is tied to the token embeddings.

// CHECK: llm.weight @embed_tokens : tensor<50272x512xf16>
// CHECK: llm.weight @embed_positions : tensor<2050x1024xf16>
// CHECK: llm.weight @project_in : tensor<1024x512xf16> {hf_name = "model.decoder.project_in.weight"}
// CHECK: llm.weight @project_out : tensor<512x1024xf16>
// CHECK-NOT: @final_norm
// CHECK-NOT: @lm_head
// CHECK-LABEL: func.func @decode_step
// CHECK-SAME: (%[[IDS:.*]]: tensor<1xi32>, %[[POS:.*]]: index) -> tensor<1x50272xf16>
// CHECK: %[[EMB:.*]] = llm.embedding %[[IDS]], %{{.*}} -> tensor<1x512xf16>
// CHECK: %[[IN:.*]] = llm.linear %[[EMB]], %{{.*}} -> tensor<1x1024xf16>
// CHECK: %[[P:.*]] = llm.position_embedding %[[POS]], %{{.*}} {offset = 2 : i64}
// CHECK: %[[X:.*]] = llm.add %[[IN]], %[[P]]
// CHECK: llm.layers 24 (%[[X]]) : tensor<1x1024xf16> {
// CHECK-NEXT: ^{{.*}}(%[[L:.*]]: index, %[[H:.*]]: tensor<1x1024xf16>):
// Post-LN: the layer's input goes straight into the projections.
// CHECK: %[[Q:.*]] = llm.linear %[[H]], %{{.*}} bias
// CHECK: %[[WO:.*]] = llm.get_weight @o_proj[%[[L]]]
// CHECK: %[[O:.*]] = llm.linear %{{.*}}, %[[WO]] bias
// CHECK: %[[R:.*]] = llm.add %[[H]], %[[O]]
// CHECK: %[[N:.*]] = llm.layer_norm %[[R]]
// CHECK: %[[F:.*]] = llm.linear %[[N]], {{.*}} -> tensor<1x4096xf16>
// CHECK: llm.relu %[[F]]
// CHECK: llm.layer_norm
// CHECK: llm.yield
// CHECK: %[[OUT:.*]] = llm.linear %{{.*}}, %{{.*}} : (tensor<1x1024xf16>, tensor<512x1024xf16>) -> tensor<1x512xf16>
// CHECK: %[[HEAD:.*]] = llm.get_weight @embed_tokens
// CHECK: llm.linear %[[OUT]], %[[HEAD]] : (tensor<1x512xf16>, tensor<50272x512xf16>) -> tensor<1x50272xf16>
