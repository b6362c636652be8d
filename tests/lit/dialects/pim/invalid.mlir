// RUN: hpim-opt %s --split-input-file --verify-diagnostics | filecheck %s

// Every verifier message of the pim dialect (the shape checks are llm's, tested there).

func.func @f(%x: tensor<1x4xf16>) {
  %t = pim.transfer %x from #pim.sram to #pim.hbm : tensor<1x4xf16> -> tensor<1x4xf16>
  %y = pim.relu %t {place = #pim.sram} : tensor<1x4xf16>
  func.return
}
// CHECK: 'pim.relu' on #pim.sram reads operand 0 from #pim.hbm; insert a pim.transfer

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %t = pim.transfer %x from #pim.sram to #pim.sram : tensor<1x4xf16> -> tensor<1x4xf16>
  func.return
}
// CHECK: 'pim.transfer' from #pim.sram to itself

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = pim.relu %x {place = #pim.hbm} : tensor<1x4xf16>
  %t = pim.transfer %y from #pim.sram to #pim.hbm : tensor<1x4xf16> -> tensor<1x4xf16>
  func.return
}
// CHECK: 'pim.transfer' from #pim.sram, but its input lives on #pim.hbm

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %t = "pim.transfer"(%x) <{source = #pim.sram, destination = #pim.hbm}> : (tensor<1x4xf16>) -> tensor<1x5xf16>
  func.return
}
// CHECK: 'pim.transfer': result type tensor<1x5xf16> differs from input type tensor<1x4xf16>

// -----

pim.weight @w : tensor<4x4xf16> {place = #pim.hbm}
func.func @f() {
  %w = pim.get_weight @w {place = #pim.sram} : tensor<4x4xf16>
  func.return
}
// CHECK: 'pim.get_weight' on #pim.sram uses @w, which is placed on #pim.hbm

// -----

pim.weight @w : tensor<4x4xf16> {place = #pim.hbm, placement = {on = "sram"}}
// CHECK: 'pim.weight' @w: placement is for 'sram' but the symbol is on #pim.hbm

// -----

pim.kv_cache @k : tensor<2x8x4xf16> {place = #pim.sram, placement = {rows = 4 : i64}}
// CHECK: 'pim.kv_cache' @k: placement has no 'on' entry naming its subsystem

// -----

llm.kv_cache @k : tensor<2x8x4xf16>
func.func @f(%x: tensor<1x4xf16>, %p: index, %l: index) {
  %y = pim.kv_append %x into @k[%l] at %p {place = #pim.sram} : tensor<1x4xf16> -> tensor<?x4xf16>
  func.return
}
// CHECK: 'pim.kv_append': @k is a 'llm.kv_cache', expected 'pim.kv_cache'

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = pim.layers 2 (%x) {place = #pim.sram} : tensor<1x4xf16> {
  ^bb0(%l: index, %h: tensor<1x4xf16>):
    %t = pim.transfer %h from #pim.sram to #pim.hbm : tensor<1x4xf16> -> tensor<1x4xf16>
    pim.yield %t : tensor<1x4xf16>
  }
  func.return
}
// CHECK: 'pim.yield' on #pim.sram reads operand 0 from #pim.hbm; insert a pim.transfer

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = pim.layers 2 (%x) {place = #pim.sram} : tensor<1x4xf16> {
  ^bb0(%l: index, %h: tensor<1x4xf16>):
    llm.yield %h : tensor<1x4xf16>
  }
  func.return
}
// CHECK: 'pim.layers': body must end in pim.yield of tensor<1x4xf16>

// -----

func.func @f() {
  pim.signal 1 on #pim.hbm {tiles = 0 : i64}
  func.return
}
// CHECK: 'pim.signal': tiles must be at least 1

// -----

func.func @f() {
  pim.wait -1 on #pim.hbm
  func.return
}
// CHECK: 'pim.wait': token must be non-negative
