// A wait no signal can satisfy: HBM-PIM waits for token 1 before it raises token 0,
// SRAM-PIM waits for token 0 before it raises token 1. One message names the token, the
// waiting instruction and the raising one (and why that one never runs).

// RUN: not hpim run-isa %s --hw hpim 2>&1 | filecheck %s
// CHECK: hpim run-isa: error: deadlock on token 1: hbm.wait tok=1 at {{.*}}deadlock.mlir:11 (every channel) waits for it; sram.signal tok=1 cores=0:4 at {{.*}}deadlock.mlir:16 would raise it, but core 0 stops before it, at sram.wait tok=0 cores=0:4 at {{.*}}deadlock.mlir:15 (waiting for token 0)
// CHECK-NOT: Traceback

builtin.module {
  hbm_isa.stream {
    hbm_isa.wait tok 1
    hbm_isa.signal tok 0
  }
  sram_isa.stream {
    sram_isa.wait cores 0 to 4 tok 0
    sram_isa.signal cores 0 to 4 tok 1
  }
}
