// RUN: hpim-opt %s --split-input-file --verify-diagnostics | filecheck %s

// Every verifier message of the llm dialect: each names the op, the operand and the mismatch.

llm.weight @w : tensor<0x4xf16>
// CHECK: 'llm.weight' @w: shape must be static and non-empty, got tensor<0x4>

// -----

llm.weight @w layered : tensor<4xf16>
// CHECK: 'llm.weight' @w: a layered weight needs a leading layer dimension, got tensor<4>

// -----

llm.weight @w layered : tensor<2x4xf16> {hf_name = "model.norm.weight"}
// CHECK: 'llm.weight' @w: hf_name "model.norm.weight" must contain {layer} exactly when the weight is layered

// -----

llm.kv_cache @k : tensor<2x64xf16>
// CHECK: 'llm.kv_cache': @k must have rank 3, got tensor<2x64>

// -----

llm.kv_cache @k : tensor<2x?x8xf16>
// CHECK: 'llm.kv_cache' @k: shape must be static and positive, got tensor<2x?x8>

// -----

func.func @f() {
  %w = llm.get_weight @missing : tensor<4xf16>
  func.return
}
// CHECK: 'llm.get_weight': weight @missing is not defined

// -----

llm.kv_cache @k : tensor<2x64x8xf16>
func.func @f() {
  %w = llm.get_weight @k : tensor<4xf16>
  func.return
}
// CHECK: 'llm.get_weight': @k is a 'llm.kv_cache', expected 'llm.weight'

// -----

llm.weight @w layered : tensor<2x4xf16>
func.func @f() {
  %w = llm.get_weight @w : tensor<4xf16>
  func.return
}
// CHECK: 'llm.get_weight': @w is layered and needs a [layer] index

// -----

llm.weight @w : tensor<4xf16>
func.func @f(%l: index) {
  %w = llm.get_weight @w[%l] : tensor<4xf16>
  func.return
}
// CHECK: 'llm.get_weight': @w is not layered and takes no [layer] index

// -----

llm.weight @w layered : tensor<2x4xf16>
func.func @f(%l: index) {
  %w = llm.get_weight @w[%l] : tensor<2x4xf16>
  func.return
}
// CHECK: 'llm.get_weight': result type tensor<2x4xf16> does not match @w, which gives tensor<4xf16>

// -----

func.func @f(%ids: tensor<1xi64>, %t: tensor<10x4xf16>) {
  %x = llm.embedding %ids, %t : (tensor<1xi64>, tensor<10x4xf16>) -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.embedding': operand 'ids' must hold i32 token ids, got tensor<1xi64>

// -----

func.func @f(%ids: tensor<2xi32>, %t: tensor<10x4xf16>) {
  %x = llm.embedding %ids, %t : (tensor<2xi32>, tensor<10x4xf16>) -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.embedding': result token count is 1 but 'ids' length is 2

// -----

func.func @f(%ids: tensor<1xi32>, %t: tensor<10x4xf16>) {
  %x = llm.embedding %ids, %t : (tensor<1xi32>, tensor<10x4xf16>) -> tensor<1x8xf16>
  func.return
}
// CHECK: 'llm.embedding': result width is 8 but 'table' width is 4

// -----

func.func @f(%ids: tensor<1x1xi32>, %t: tensor<10x4xf16>) {
  %x = llm.embedding %ids, %t : (tensor<1x1xi32>, tensor<10x4xf16>) -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.embedding': operand 'ids' must have rank 1, got tensor<1x1>

// -----

func.func @f(%p: index, %t: tensor<10x4xf16>) {
  %x = llm.position_embedding %p, %t {offset = 10 : i64} : tensor<10x4xf16> -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.position_embedding': offset 10 is outside the 10-row table

// -----

func.func @f(%p: index, %t: tensor<10x4xf16>) {
  %x = llm.position_embedding %p, %t {offset = 2 : i64} : tensor<10x4xf16> -> tensor<1x5xf16>
  func.return
}
// CHECK: 'llm.position_embedding': result width is 5 but 'table' width is 4

// -----

func.func @f(%x: tensor<1x4xf16>, %g: tensor<5xf16>) {
  %y = llm.rms_norm %x, %g {epsilon = 1.0e-05 : f32} : tensor<1x4xf16>, tensor<5xf16>
  func.return
}
// CHECK: 'llm.rms_norm': 'gamma' length is 5 but the input feature count is 4

// -----

func.func @f(%x: tensor<1x4xf16>, %g: tensor<4xf16>, %b: tensor<3xf16>) {
  %y = "llm.layer_norm"(%x, %g, %b) <{epsilon = 1.0e-05 : f32}> : (tensor<1x4xf16>, tensor<4xf16>, tensor<3xf16>) -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.layer_norm': 'beta' length is 3 but the input feature count is 4

// -----

func.func @f(%x: tensor<1x4xf16>, %g: tensor<4xf16>) {
  %y = llm.rms_norm %x, %g {epsilon = 0.0 : f32} : tensor<1x4xf16>, tensor<4xf16>
  func.return
}
// CHECK: 'llm.rms_norm': epsilon must be positive

// -----

func.func @f(%x: tensor<1x4xf16>, %g: tensor<4xf16>) {
  %y = "llm.rms_norm"(%x, %g) <{epsilon = 1.0e-05 : f32}> : (tensor<1x4xf16>, tensor<4xf16>) -> tensor<1x4xf32>
  func.return
}
// CHECK: 'llm.rms_norm': result type tensor<1x4xf32> differs from 'input' type tensor<1x4xf16>

// -----

func.func @f(%x: tensor<1x4xf16>, %w: tensor<8x5xf16>) {
  %y = llm.linear %x, %w : (tensor<1x4xf16>, tensor<8x5xf16>) -> tensor<1x8xf16>
  func.return
}
// CHECK: 'llm.linear': 'weight' input dimension is 5 but the input feature count is 4

// -----

func.func @f(%x: tensor<1x4xf16>, %w: tensor<8x4xf16>, %b: tensor<4xf16>) {
  %y = llm.linear %x, %w bias %b : (tensor<1x4xf16>, tensor<8x4xf16>, tensor<4xf16>) -> tensor<1x8xf16>
  func.return
}
// CHECK: 'llm.linear': 'bias' length is 4 but the weight's output dimension is 8

// -----

func.func @f(%x: tensor<1x4xf16>, %w: tensor<8x4xf16>) {
  %y = llm.linear %x, %w : (tensor<1x4xf16>, tensor<8x4xf16>) -> tensor<2x8xf16>
  func.return
}
// CHECK: 'llm.linear': result token count is 2 but the input token count is 1

// -----

func.func @f(%x: tensor<1x4xf16>, %w: tensor<8x4xf16>) {
  %y = llm.linear %x, %w : (tensor<1x4xf16>, tensor<8x4xf16>) -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.linear': result width is 4 but the weight's output dimension is 8

// -----

func.func @f(%x: tensor<4xf16>, %w: tensor<8x4xf16>) {
  %y = llm.linear %x, %w : (tensor<4xf16>, tensor<8x4xf16>) -> tensor<1x8xf16>
  func.return
}
// CHECK: 'llm.linear': operand 'input' must have rank 2, got tensor<4>

// -----

func.func @f(%x: tensor<1x4xf16>, %w: i32) {
  %y = "llm.linear"(%x, %w) : (tensor<1x4xf16>, i32) -> tensor<1x4xf16>
  func.return
}
// CHECK: operand 'weight' at position 1 does not verify:
// CHECK-NEXT: i32 should be of base attribute tensor

// -----

func.func @f(%x: tensor<1x16xf16>, %p: index) {
  %y = llm.rope %x, %p {num_heads = 0 : i64, theta = 1.0e+04 : f32} : tensor<1x16xf16>
  func.return
}
// CHECK: 'llm.rope': num_heads must be positive, got 0

// -----

func.func @f(%x: tensor<1x16xf16>, %p: index) {
  %y = llm.rope %x, %p {num_heads = 3 : i64, theta = 1.0e+04 : f32} : tensor<1x16xf16>
  func.return
}
// CHECK: 'llm.rope': operand 'input' has 16 features, not a multiple of 3 heads

// -----

func.func @f(%x: tensor<1x12xf16>, %p: index) {
  %y = llm.rope %x, %p {num_heads = 4 : i64, theta = 1.0e+04 : f32} : tensor<1x12xf16>
  func.return
}
// CHECK: 'llm.rope': head dimension 3 must be even

// -----

func.func @f(%x: tensor<1x16xf16>, %p: index) {
  %y = llm.rope %x, %p {num_heads = 4 : i64, theta = -1.0 : f32} : tensor<1x16xf16>
  func.return
}
// CHECK: 'llm.rope': theta must be positive

// -----

llm.kv_cache @k : tensor<2x64x8xf16>
func.func @f(%x: tensor<1x16xf16>, %p: index, %l: index) {
  %y = llm.kv_append %x into @k[%l] at %p : tensor<1x16xf16> -> tensor<?x16xf16>
  func.return
}
// CHECK: 'llm.kv_append': 'value' width is 16 but @k's width is 8

// -----

llm.kv_cache @k : tensor<2x64x8xf16>
func.func @f(%x: tensor<1x8xf16>, %p: index, %l: index) {
  %y = llm.kv_append %x into @k[%l] at %p : tensor<1x8xf16> -> tensor<?x4xf16>
  func.return
}
// CHECK: 'llm.kv_append': result width is 4 but @k's width is 8

// -----

llm.kv_cache @k : tensor<2x64x8xf16>
func.func @f(%x: tensor<1x8xf16>, %p: index, %l: index) {
  %y = llm.kv_append %x into @k[%l] at %p : tensor<1x8xf16> -> tensor<5x8xf16>
  func.return
}
// CHECK: 'llm.kv_append': result length must be dynamic (the context length), got 5

// -----

func.func @f(%q: tensor<1x16xf16>, %k: tensor<?x8xf16>) {
  %s = llm.attention_scores %q, %k {num_heads = 4 : i64, num_kv_heads = 3 : i64, scale = 1.0 : f32} : (tensor<1x16xf16>, tensor<?x8xf16>) -> tensor<4x1x?xf16>
  func.return
}
// CHECK: 'llm.attention_scores': num_heads (4) must be a positive multiple of num_kv_heads (3)

// -----

func.func @f(%q: tensor<1x16xf16>, %k: tensor<?x16xf16>) {
  %s = llm.attention_scores %q, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 1.0 : f32} : (tensor<1x16xf16>, tensor<?x16xf16>) -> tensor<4x1x?xf16>
  func.return
}
// CHECK: 'llm.attention_scores': key head dimension is 8 but the query head dimension is 4

// -----

func.func @f(%q: tensor<1x16xf16>, %k: tensor<?x8xf16>) {
  %s = llm.attention_scores %q, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 1.0 : f32} : (tensor<1x16xf16>, tensor<?x8xf16>) -> tensor<2x1x?xf16>
  func.return
}
// CHECK: 'llm.attention_scores': result heads is 2 but num_heads is 4

// -----

func.func @f(%q: tensor<1x16xf16>, %k: tensor<?x8xf16>) {
  %s = llm.attention_scores %q, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 1.0 : f32} : (tensor<1x16xf16>, tensor<?x8xf16>) -> tensor<4x2x?xf16>
  func.return
}
// CHECK: 'llm.attention_scores': result query count is 2 but the query token count is 1

// -----

func.func @f(%q: tensor<1x16xf16>, %k: tensor<7x8xf16>) {
  %s = llm.attention_scores %q, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 1.0 : f32} : (tensor<1x16xf16>, tensor<7x8xf16>) -> tensor<4x1x6xf16>
  func.return
}
// CHECK: 'llm.attention_scores': result key count is 6 but the key count is 7

// -----

func.func @f(%q: tensor<1x16xf16>, %k: tensor<?x9xf16>) {
  %s = llm.attention_scores %q, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 1.0 : f32} : (tensor<1x16xf16>, tensor<?x9xf16>) -> tensor<4x1x?xf16>
  func.return
}
// CHECK: 'llm.attention_scores': operand 'keys' has 9 features, not a multiple of 2 heads

// -----

func.func @f(%p: tensor<2x1x?xf16>, %v: tensor<?x8xf16>) {
  %o = llm.attention_values %p, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<2x1x?xf16>, tensor<?x8xf16>) -> tensor<1x16xf16>
  func.return
}
// CHECK: 'llm.attention_values': 'probs' head count is 2 but num_heads is 4

// -----

func.func @f(%p: tensor<4x1x6xf16>, %v: tensor<7x8xf16>) {
  %o = llm.attention_values %p, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<4x1x6xf16>, tensor<7x8xf16>) -> tensor<1x16xf16>
  func.return
}
// CHECK: 'llm.attention_values': 'values' length is 7 but the 'probs' key count is 6

// -----

func.func @f(%p: tensor<4x1x?xf16>, %v: tensor<?x8xf16>) {
  %o = llm.attention_values %p, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<4x1x?xf16>, tensor<?x8xf16>) -> tensor<2x16xf16>
  func.return
}
// CHECK: 'llm.attention_values': result token count is 2 but the 'probs' query count is 1

// -----

func.func @f(%p: tensor<4x1x?xf16>, %v: tensor<?x8xf16>) {
  %o = llm.attention_values %p, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<4x1x?xf16>, tensor<?x8xf16>) -> tensor<1x8xf16>
  func.return
}
// CHECK: 'llm.attention_values': result width is 8 but heads x head dimension is 16

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = "llm.relu"(%x) : (tensor<1x4xf16>) -> tensor<1x5xf16>
  func.return
}
// CHECK: 'llm.relu': result type tensor<1x5xf16> differs from 'input' type tensor<1x4xf16>

// -----

func.func @f(%x: tensor<1x4xf16>, %y: tensor<1x5xf16>) {
  %z = "llm.add"(%x, %y) : (tensor<1x4xf16>, tensor<1x5xf16>) -> tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.add': operand 'rhs' type tensor<1x5xf16> differs from 'lhs' type tensor<1x4xf16>

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = llm.layers 0 (%x) : tensor<1x4xf16> {
  ^bb0(%l: index, %h: tensor<1x4xf16>):
    llm.yield %h : tensor<1x4xf16>
  }
  func.return
}
// CHECK: 'llm.layers': count must be positive, got 0

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = llm.layers 2 (%x) : tensor<1x4xf16> {
  ^bb0(%h: tensor<1x4xf16>):
    llm.yield %h : tensor<1x4xf16>
  }
  func.return
}
// CHECK: 'llm.layers': body arguments must be (index, tensor<1x4xf16>), got (tensor<1x4xf16>)

// -----

func.func @f(%x: tensor<1x4xf16>, %z: tensor<1x5xf16>) {
  %y = llm.layers 2 (%x) : tensor<1x4xf16> {
  ^bb0(%l: index, %h: tensor<1x4xf16>):
    llm.yield %z : tensor<1x5xf16>
  }
  func.return
}
// CHECK: 'llm.layers': body must end in llm.yield of tensor<1x4xf16>

// -----

func.func @f(%x: tensor<1x4xf16>) {
  llm.yield %x : tensor<1x4xf16>
}
// CHECK: 'llm.yield' expects parent op 'llm.layers'

