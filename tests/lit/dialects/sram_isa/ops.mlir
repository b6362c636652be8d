// RUN: hpim-opt %s | hpim-opt | filecheck %s
// RUN: hpim-opt %s --print-op-generic | hpim-opt | filecheck %s

// Every sram_isa op in its custom form; both the custom and the generic print parse back to it.

// CHECK-LABEL: sram_isa.stream attributes {section = "layers", repeat = 32 : i64} {
sram_isa.stream attributes {section = "layers", repeat = 32 : i64} {
  // Declarations: a buffer in activation memory (bytes) and one in the PIM macros (rows x cols).
  // CHECK-NEXT: sram_isa.alloc am cores 0 to 32 dst 3 bytes 256
  // CHECK-NEXT: sram_isa.alloc pim cores 0 to 32 dst 5 rows "ctx + 1" cols 64
  sram_isa.alloc am cores 0 to 32 dst 3 bytes 256
  sram_isa.alloc pim cores 0 to 32 dst 5 rows "ctx + 1" cols 64
  // The link, the macros, the TCU; without `cores`: every core. Hex integers print decimal.
  // CHECK-NEXT: sram_isa.load cores 0 to 32 dst 3 bytes "256*ctx + 256"
  // CHECK-NEXT: sram_isa.store src0 3 bytes 128
  // CHECK-NEXT: sram_isa.macro_write dst 5 src0 3 rows 1 cols 64
  // CHECK-NEXT: sram_isa.mvm dst 4 src0 3 src1 5 rows 64 cols "ctx + 1"
  // CHECK-NEXT: sram_isa.stream_mvm dst 4 src0 3 rows 64 cols "ceildiv(ctx + 1, 4)"
  // CHECK-NEXT: sram_isa.stream_mvm dst 4 src0 3 rows 64 cols "ceildiv(ctx - 11, 16)"
  // CHECK-NEXT: sram_isa.gemm dst 1 src0 2 src1 3 m 16 n 64 k 64
  sram_isa.load cores 0 to 32 dst 3 bytes "256*ctx + 256"
  sram_isa.store src0 3 bytes 0x80
  sram_isa.macro_write dst 5 src0 3 rows 1 cols 64
  sram_isa.mvm dst 4 src0 3 src1 5 rows 64 cols "ctx + 1"
  sram_isa.stream_mvm dst 4 src0 3 rows 64 cols "ceildiv(ctx + 1, 4)"
  // A streamed product may be empty: piece 3 of 4 of "ceildiv(ctx + 1, 4)" is 0 up to ctx 11.
  sram_isa.stream_mvm dst 4 src0 3 rows 64 cols "ceildiv(ctx - 11, 16)"
  sram_isa.gemm dst 1 src0 2 src1 3 m 16 n 64 k 64
  // The VCU with and without its optional src1; other attributes survive after the fields.
  // CHECK-NEXT: sram_isa.vcu softmax cores 0 to 32 dst 4 src0 3 n "ctx + 1"
  // CHECK-NEXT: sram_isa.vcu layernorm dst 4 src0 3 src1 2 n 4096 {note = "ln1"}
  sram_isa.vcu softmax cores 0 to 32 dst 4 src0 3 n "ctx + 1"
  sram_isa.vcu layernorm dst 4 src0 3 src1 2 n 4096 {note = "ln1"}
  // Transpose, collectives (reduce without its optional dst), scalar work with no operands.
  // CHECK-NEXT: sram_isa.transpose dst 6 src0 4 rows 1 cols 64
  // CHECK-NEXT: sram_isa.allgather cores 0 to 4 dst 7 src0 4 bytes 128
  // CHECK-NEXT: sram_isa.reduce cores 4 to 8 src0 4 bytes 128
  // CHECK-NEXT: sram_isa.scalar n "2*ctx + 1"
  sram_isa.transpose dst 6 src0 4 rows 1 cols 64
  sram_isa.allgather cores 0 to 4 dst 7 src0 4 bytes 128
  sram_isa.reduce cores 4 to 8 src0 4 bytes 128
  sram_isa.scalar n "2*ctx + 1"
  // Sync and release.
  // CHECK-NEXT: sram_isa.signal tok 7
  // CHECK-NEXT: sram_isa.wait cores 0 to 1 tok 0
  // CHECK-NEXT: sram_isa.barrier{{$}}
  // CHECK-NEXT: sram_isa.barrier cores 2 to 3
  // CHECK-NEXT: sram_isa.free dst 3
  sram_isa.signal tok 7
  sram_isa.wait cores 0 to 1 tok 0
  sram_isa.barrier
  sram_isa.barrier cores 2 to 3
  sram_isa.free dst 3
}

// An empty stream keeps its block; a stream with only other attributes.
// CHECK: sram_isa.stream {
// CHECK-NEXT: }
// CHECK: sram_isa.stream attributes {name = "prologue"} {
// CHECK-NEXT: sram_isa.barrier
sram_isa.stream {
}
sram_isa.stream attributes {name = "prologue"} {
  sram_isa.barrier
}
