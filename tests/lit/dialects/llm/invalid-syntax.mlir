// RUN: hpim-opt %s --split-input-file --parsing-diagnostics | filecheck %s

// Errors of the llm dialect's custom syntax, each reported at the op.

func.func @f(%x: tensor<1x4xf16>) {
  %y = llm.relu %x, %x : tensor<1x4xf16>
  func.return
}
// CHECK: invalid-syntax.mlir:6:17
// CHECK: 'llm.relu' takes 1 operand(s) and 1 type(s)

// -----

func.func @f(%x: tensor<1x4xf16>, %g: tensor<4xf16>) {
  %y = llm.rms_norm %x, %g {epsilon = 1.0e-05 : f32} : tensor<1x4xf16>
  func.return
}
// CHECK: 'llm.rms_norm' takes 2 operand(s) and 2 type(s)

// -----

func.func @f(%x: tensor<1x4xf16>) {
  %y = llm.layers two (%x) : tensor<1x4xf16> {
  ^bb0(%l: index, %h: tensor<1x4xf16>):
    llm.yield %h : tensor<1x4xf16>
  }
  func.return
}
// CHECK: Expected integer literal
