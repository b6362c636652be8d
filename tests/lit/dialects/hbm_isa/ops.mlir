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
  // Macro-instructions over a half-open channel range; attributes other than fields survive.
  // CHECK-NEXT: hbm_isa.gemv ch 0 to 16 row 0 rows 4 cols 32 {layer = "q_proj"}
  // CHECK-NEXT: hbm_isa.load_gb ch 0 to 16 cols 32
  // CHECK-NEXT: hbm_isa.readout ch 4 to 5 n 8
  hbm_isa.gemv ch 0 to 16 row 0 rows 4 cols 32 {layer = "q_proj"}
  hbm_isa.load_gb ch 0 to 16 cols 32
  hbm_isa.readout ch 4 to 5 n 8
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
