// RUN: hpim-opt %s | hpim-opt | filecheck %s
// RUN: hpim-opt %s --print-op-generic | hpim-opt | filecheck %s

// The pim dialect: placed twins of the llm ops, placed symbols, transfers, sync.

// CHECK: pim.weight @wq layered : tensor<2x16x16xf16> {place = #pim.hbm, placement = {on = "hbm", row_base = 0 : i64}}
// CHECK: pim.kv_cache @keys : tensor<2x64x16xf16> {place = #pim.sram}
pim.weight @wq layered : tensor<2x16x16xf16> {place = #pim.hbm, placement = {on = "hbm", row_base = 0 : i64}}
pim.weight @g layered : tensor<2x16xf16> {place = #pim.sram}
pim.kv_cache @keys : tensor<2x64x16xf16> {place = #pim.sram}

// CHECK-LABEL: func.func @step
func.func @step(%x: tensor<1x16xf16>, %pos: index) -> tensor<1x16xf16> {
  // CHECK: pim.layers 2 (%{{.*}}) {place = #pim.sram} : tensor<1x16xf16> {
  %y = pim.layers 2 (%x) {place = #pim.sram} : tensor<1x16xf16> {
  ^bb0(%l: index, %h: tensor<1x16xf16>):
    %g = pim.get_weight @g[%l] {place = #pim.sram} : tensor<16xf16>
    %n = pim.rms_norm %h, %g {epsilon = 1.0e-05 : f32, place = #pim.sram} : tensor<1x16xf16>, tensor<16xf16>
    // CHECK: %[[T:.*]] = pim.transfer %{{.*}} from #pim.sram to #pim.hbm : tensor<1x16xf16> -> tensor<1x16xf16>
    %t = pim.transfer %n from #pim.sram to #pim.hbm : tensor<1x16xf16> -> tensor<1x16xf16>
    // CHECK: pim.signal 0 : i64 on #pim.sram {tiles = 1 : i64}
    // CHECK: pim.wait 0 : i64 on #pim.hbm
    pim.signal 0 on #pim.sram {tiles = 1 : i64}
    pim.wait 0 on #pim.hbm
    %w = pim.get_weight @wq[%l] {place = #pim.hbm} : tensor<16x16xf16>
    // CHECK: %[[Q:.*]] = pim.linear %[[T]], %{{.*}} {place = #pim.hbm, tile = {scheme = "row"}, stage = 1 : i64}
    %q = pim.linear %t, %w {place = #pim.hbm, tile = {scheme = "row"}, stage = 1 : i64} : (tensor<1x16xf16>, tensor<16x16xf16>) -> tensor<1x16xf16>
    %q2 = pim.transfer %q from #pim.hbm to #pim.sram {tiles = 2 : i64} : tensor<1x16xf16> -> tensor<1x16xf16>
    // CHECK: pim.kv_append %{{.*}} into @keys[%{{.*}}] at %{{.*}} {place = #pim.sram}
    %kc = pim.kv_append %q2 into @keys[%l] at %pos {place = #pim.sram} : tensor<1x16xf16> -> tensor<?x16xf16>
    %s = pim.attention_scores %q2, %kc {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 0.25 : f32, place = #pim.sram} : (tensor<1x16xf16>, tensor<?x16xf16>) -> tensor<2x1x?xf16>
    %p = pim.softmax %s {place = #pim.sram} : tensor<2x1x?xf16>
    %o = pim.attention_values %p, %kc {num_heads = 2 : i64, num_kv_heads = 2 : i64, place = #pim.sram} : (tensor<2x1x?xf16>, tensor<?x16xf16>) -> tensor<1x16xf16>
    %r = pim.add %o, %h {place = #pim.sram} : tensor<1x16xf16>
    // CHECK: pim.yield
    pim.yield %r : tensor<1x16xf16>
  }
  func.return %y : tensor<1x16xf16>
}
