// RUN: hpim-opt %s --split-input-file --parsing-diagnostics | filecheck %s

// Errors of the sram_isa custom syntax and of #sram_isa.size, each at the offending text.
// A symbolic size is written exactly as it prints (Affine's form), a constant as an integer.

sram_isa.stream {
  sram_isa.load dst 3 bytes "ctx+1"
}
// CHECK: invalid-syntax.mlir:7:29
// CHECK: size "ctx+1" is not a size: write an integer, or a string such as "ctx", "256*ctx", "ctx + 1", "ceildiv(ctx + 1, 4)" (A*ctx + B, divided up by D)

// -----

sram_isa.stream {
  sram_isa.load dst 3 bytes "1*ctx"
}
// CHECK: size "1*ctx" is written "ctx"

// -----

sram_isa.stream {
  sram_isa.vcu exp dst 3 src0 1 n "ceildiv(ctx + 1, 1)"
}
// CHECK: size "ceildiv(ctx + 1, 1)" is written "ctx + 1"

// -----

sram_isa.stream {
  sram_isa.load dst 3 bytes "0*ctx + 5"
}
// CHECK: size "0*ctx + 5" is written 5

// -----

sram_isa.stream {
  sram_isa.load dst 3 bytes "256"
}
// CHECK: size "256" is a constant: write it without quotes, 256

// -----

sram_isa.stream {
  sram_isa.load dst 3 bytes ctx
}
// CHECK: string literal expected (a size: an integer, or a string such as "ctx + 1")

// -----

sram_isa.stream {
  "sram_isa.load"() <{dst = 3 : i64, bytes = #sram_isa.size<"ctx * 2">}> : () -> ()
}
// CHECK: size "ctx * 2" is not a size

// -----

sram_isa.stream {
  sram_isa.load dst 3 dst 4 bytes 8
}
// CHECK: invalid-syntax.mlir:57:23
// CHECK: 'sram_isa.load': dst is given twice

// -----

sram_isa.stream {
  sram_isa.vcu tanh dst 3 src0 1 n 8
}
// CHECK: invalid-syntax.mlir:65:16
// CHECK: 'sram_isa.vcu': unexpected 'tanh'; expected a kind (exp, max, sum, softmax, layernorm, rmsnorm, gelu, relu, silu, mul, add, rope), 'cores LO to HI', or a field (dst, src0, src1, tok, bytes, rows, cols, m, n, k)

// -----

sram_isa.stream {
  sram_isa.load dts 3 bytes 8
}
// CHECK: 'sram_isa.load': unexpected 'dts'; expected 'cores LO to HI', or a field (dst, src0, src1, tok, bytes, rows, cols, m, n, k)

// -----

sram_isa.stream {
  sram_isa.load cores 0 32 dst 3 bytes 8
}
// CHECK: Expected 'to'
