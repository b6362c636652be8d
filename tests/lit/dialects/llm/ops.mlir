// RUN: hpim-opt %s | hpim-opt | filecheck %s
// RUN: hpim-opt %s --print-op-generic | hpim-opt | filecheck %s

// Every llm op in its custom form; both the custom and the generic print parse back to it.

llm.weight @embed : tensor<100x16xf16> {hf_name = "model.embed_tokens.weight"}
llm.weight @positions : tensor<66x16xf16>
llm.weight @wq layered : tensor<2x16x16xf16> {hf_name = "model.layers.{layer}.q_proj.weight"}
llm.weight @wkv layered : tensor<2x8x16xf16>
llm.weight @bq layered : tensor<2x16xf16>
llm.weight @norm layered : tensor<2x16xf16>
llm.kv_cache @keys : tensor<2x64x8xf16>

// CHECK:      llm.weight @embed : tensor<100x16xf16> {hf_name = "model.embed_tokens.weight"}
// CHECK:      llm.weight @wq layered : tensor<2x16x16xf16> {hf_name = "model.layers.{layer}.q_proj.weight"}
// CHECK:      llm.kv_cache @keys : tensor<2x64x8xf16>

// CHECK-LABEL: func.func @step
// CHECK-SAME:    (%[[IDS:.*]]: tensor<1xi32>, %[[POS:.*]]: index)
func.func @step(%ids: tensor<1xi32>, %pos: index) -> tensor<1x16xf16> {
  // CHECK: %[[T:.*]] = llm.get_weight @embed : tensor<100x16xf16>
  // CHECK: %[[X:.*]] = llm.embedding %[[IDS]], %[[T]] : (tensor<1xi32>, tensor<100x16xf16>) -> tensor<1x16xf16>
  %t = llm.get_weight @embed : tensor<100x16xf16>
  %x = llm.embedding %ids, %t : (tensor<1xi32>, tensor<100x16xf16>) -> tensor<1x16xf16>
  // CHECK: llm.position_embedding %[[POS]], %{{.*}} {offset = 2 : i64} : tensor<66x16xf16> -> tensor<1x16xf16>
  %pt = llm.get_weight @positions : tensor<66x16xf16>
  %p = llm.position_embedding %pos, %pt {offset = 2 : i64} : tensor<66x16xf16> -> tensor<1x16xf16>
  %x1 = llm.add %x, %p : tensor<1x16xf16>
  // CHECK: %{{.*}} = llm.layers 2 (%{{.*}}) : tensor<1x16xf16> {
  // CHECK-NEXT: ^{{.*}}(%[[L:.*]]: index, %[[H:.*]]: tensor<1x16xf16>):
  %y = llm.layers 2 (%x1) : tensor<1x16xf16> {
  ^bb0(%l: index, %h: tensor<1x16xf16>):
    // CHECK: %[[W:.*]] = llm.get_weight @wq[%[[L]]] : tensor<16x16xf16>
    %w = llm.get_weight @wq[%l] : tensor<16x16xf16>
    %b = llm.get_weight @bq[%l] : tensor<16xf16>
    %g = llm.get_weight @norm[%l] : tensor<16xf16>
    %wkv = llm.get_weight @wkv[%l] : tensor<8x16xf16>
    // CHECK: %[[N:.*]] = llm.rms_norm %[[H]], %{{.*}} {epsilon = 1.000000e-05 : f32} : tensor<1x16xf16>, tensor<16xf16>
    %n = llm.rms_norm %h, %g {epsilon = 1.0e-05 : f32} : tensor<1x16xf16>, tensor<16xf16>
    // CHECK: llm.layer_norm %[[N]], %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f32} : tensor<1x16xf16>, tensor<16xf16>
    %n2 = llm.layer_norm %n, %g, %b {epsilon = 1.0e-05 : f32} : tensor<1x16xf16>, tensor<16xf16>
    // CHECK: %[[Q:.*]] = llm.linear %{{.*}}, %[[W]] bias %{{.*}} : (tensor<1x16xf16>, tensor<16x16xf16>, tensor<16xf16>) -> tensor<1x16xf16>
    %q = llm.linear %n2, %w bias %b : (tensor<1x16xf16>, tensor<16x16xf16>, tensor<16xf16>) -> tensor<1x16xf16>
    // CHECK: llm.rope %[[Q]], %[[POS]] {num_heads = 4 : i64, theta = 1.000000e+04 : f32} : tensor<1x16xf16>
    %qr = llm.rope %q, %pos {num_heads = 4 : i64, theta = 1.0e+04 : f32} : tensor<1x16xf16>
    %k = llm.linear %n2, %wkv : (tensor<1x16xf16>, tensor<8x16xf16>) -> tensor<1x8xf16>
    // CHECK: %[[K:.*]] = llm.kv_append %{{.*}} into @keys[%[[L]]] at %[[POS]] : tensor<1x8xf16> -> tensor<?x8xf16>
    %kc = llm.kv_append %k into @keys[%l] at %pos : tensor<1x8xf16> -> tensor<?x8xf16>
    // CHECK: %[[S:.*]] = llm.attention_scores %{{.*}}, %[[K]] {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f32} : (tensor<1x16xf16>, tensor<?x8xf16>) -> tensor<4x1x?xf16>
    %s = llm.attention_scores %qr, %kc {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 0.25 : f32} : (tensor<1x16xf16>, tensor<?x8xf16>) -> tensor<4x1x?xf16>
    // CHECK: %[[P:.*]] = llm.softmax %[[S]] : tensor<4x1x?xf16>
    %pr = llm.softmax %s : tensor<4x1x?xf16>
    // CHECK: llm.attention_values %[[P]], %[[K]] {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<4x1x?xf16>, tensor<?x8xf16>) -> tensor<1x16xf16>
    %o = llm.attention_values %pr, %kc {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<4x1x?xf16>, tensor<?x8xf16>) -> tensor<1x16xf16>
    // CHECK: llm.relu
    // CHECK: llm.gelu
    // CHECK: llm.silu
    // CHECK: llm.mul
    %a1 = llm.relu %o : tensor<1x16xf16>
    %a2 = llm.gelu %a1 : tensor<1x16xf16>
    %a3 = llm.silu %a2 : tensor<1x16xf16>
    %a4 = llm.mul %a3, %a1 : tensor<1x16xf16>
    %r = llm.add %a4, %h : tensor<1x16xf16>
    // CHECK: llm.yield %{{.*}} : tensor<1x16xf16>
    llm.yield %r : tensor<1x16xf16>
  }
  func.return %y : tensor<1x16xf16>
}

// CHECK-LABEL: func.func @prefill_scores
func.func @prefill_scores(%q: tensor<8x16xf16>, %k: tensor<8x16xf16>) -> tensor<2x8x8xf16> {
  // CHECK: llm.attention_scores {{.*}}causal{{.*}} -> tensor<2x8x8xf16>
  %s = llm.attention_scores %q, %k {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 0.25 : f32, causal} : (tensor<8x16xf16>, tensor<8x16xf16>) -> tensor<2x8x8xf16>
  func.return %s : tensor<2x8x8xf16>
}
