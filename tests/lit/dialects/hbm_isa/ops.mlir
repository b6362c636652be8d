// RUN: hpim-opt %s | hpim-opt | filecheck %s
// RUN: hpim-opt %s --print-op-generic | hpim-opt | filecheck %s

// Every hbm_isa op in its custom form; both the custom and the generic print parse back to it.

// CHECK-LABEL: hbm_isa.stream {
hbm_isa.stream {
  // Raw commands, one channel each; the barrier also without a channel (all channels).
  // CHECK-NEXT: hbm_isa.wr_gb ch 3 col 5
  // CHECK-NEXT: hbm_isa.mac_ab ch 3 row 12 col 5
  // CHECK-NEXT: hbm_isa.act_ab ch 0 row 16383
  // CHECK-NEXT: hbm_isa.pre_ab ch 0
  // CHECK-NEXT: hbm_isa.rd_out ch 15
  // CHECK-NEXT: hbm_isa.barrier{{$}}
  // CHECK-NEXT: hbm_isa.barrier ch 2
  hbm_isa.wr_gb ch 3 col 5
  hbm_isa.mac_ab ch 3 row 12 col 5
  hbm_isa.act_ab ch 0 row 16383
  hbm_isa.pre_ab ch 0
  hbm_isa.rd_out ch 15
  hbm_isa.barrier
  hbm_isa.barrier ch 2
  // Sync tokens.
  // CHECK-NEXT: hbm_isa.signal tok 4
  // CHECK-NEXT: hbm_isa.wait tok 0
  hbm_isa.signal tok 4
  hbm_isa.wait tok 0
  // Normal mode: single-bank commands.
  // CHECK-NEXT: hbm_isa.act ch 2 bank 63 row 9
  // CHECK-NEXT: hbm_isa.pre ch 2 bank 63
  // CHECK-NEXT: hbm_isa.rd ch 1 bank 3 row 4 col 31
  // CHECK-NEXT: hbm_isa.wr ch 1 bank 3 row 4 col 0
  // CHECK-NEXT: hbm_isa.rda ch 1 bank 7 row 8 col 1
  // CHECK-NEXT: hbm_isa.wra ch 1 bank 7 row 8 col 2
  hbm_isa.act ch 2 bank 63 row 9
  hbm_isa.pre ch 2 bank 63
  hbm_isa.rd ch 1 bank 3 row 4 col 31
  hbm_isa.wr ch 1 bank 3 row 4 col 0
  hbm_isa.rda ch 1 bank 7 row 8 col 1
  hbm_isa.wra ch 1 bank 7 row 8 col 2
  // Macro-instructions over a half-open channel range; attributes other than fields survive.
  // CHECK-NEXT: hbm_isa.gemv ch 0 to 16 row 0 rows 4 cols 32 {layer = "q_proj"}
  // CHECK-NEXT: hbm_isa.load_gb ch 0 to 16 cols 32
  // CHECK-NEXT: hbm_isa.readout ch 4 to 5 n 8
  // CHECK-NEXT: hbm_isa.read ch 0 to 16 row 100 rows 2 cols 32
  // CHECK-NEXT: hbm_isa.write ch 3 to 4 row 6 rows 1 cols 16
  hbm_isa.gemv ch 0 to 16 row 0 rows 4 cols 32 {layer = "q_proj"}
  hbm_isa.load_gb ch 0 to 16 cols 32
  hbm_isa.readout ch 4 to 5 n 8
  hbm_isa.read ch 0 to 16 row 100 rows 2 cols 32
  hbm_isa.write ch 3 to 4 row 6 rows 1 cols 16
  // Counts that grow with the context length: `ctx P / D` adds ceil(P * ctx / D), and the
  // count itself may then be 0.
  // CHECK-NEXT: hbm_isa.read ch 0 to 16 row 100 rows 0 cols 32 ctx 1 / 8
  // CHECK-NEXT: hbm_isa.write ch 0 to 16 row 900 rows 0 cols 2 ctx 1 / 256
  // CHECK-NEXT: hbm_isa.gemv ch 0 to 2 row 2 rows 1 cols 4 ctx 3 / 2
  // CHECK-NEXT: hbm_isa.readout ch 0 to 1 n 0 ctx 1 / 16
  hbm_isa.read ch 0 to 16 row 100 rows 0 cols 32 ctx 1 / 8
  hbm_isa.write ch 0 to 16 row 900 rows 0 cols 2 ctx 1 / 256
  hbm_isa.gemv ch 0 to 2 row 2 rows 1 cols 4 ctx 3 / 2
  hbm_isa.readout ch 0 to 1 n 0 ctx 1 / 16
  // With an offset, `ctx P / D off Q` adds max(0, ceil((P * ctx + Q) / D)): piece 1 of 4 of
  // `ctx 1 / 512` reads every 4th row of it from row 1 on.
  // CHECK-NEXT: hbm_isa.read ch 0 to 16 row 164 rows 0 cols 8 ctx 1 / 2048 off -512
  // CHECK-NEXT: hbm_isa.gemv ch 0 to 2 row 2 rows 1 cols 4 ctx 3 / 2 off 5
  hbm_isa.read ch 0 to 16 row 164 rows 0 cols 8 ctx 1 / 2048 off -512
  hbm_isa.gemv ch 0 to 2 row 2 rows 1 cols 4 ctx 3 / 2 off 5
}

// An empty stream and a stream with attributes.
// CHECK: hbm_isa.stream {
// CHECK-NEXT: }
// CHECK: hbm_isa.stream attributes {name = "decode"} {
// CHECK-NEXT: hbm_isa.barrier
hbm_isa.stream {
}
hbm_isa.stream attributes {name = "decode"} {
  hbm_isa.barrier
}

// A section of a compiled program: repeated per layer, rows moved on by the stride.
// CHECK: hbm_isa.stream attributes {section = "layers", repeat = 48 : i64, row_stride = 328 : i64} {
// CHECK-NEXT: hbm_isa.read ch 0 to 64 row 0 rows 0 cols 32 ctx 1 / 8
hbm_isa.stream attributes {section = "layers", repeat = 48 : i64, row_stride = 328 : i64} {
  hbm_isa.read ch 0 to 64 row 0 rows 0 cols 32 ctx 1 / 8
}
