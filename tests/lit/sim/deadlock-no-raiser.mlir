// A wait for a token that no instruction of either stream raises.

// RUN: not hpim run-isa %s --hw hpim 2>&1 | filecheck %s
// CHECK: hpim run-isa: error: deadlock on token 9: sram.wait tok=9 cores=0:2 at {{.*}}deadlock-no-raiser.mlir:12 waits for it, and no instruction raises it
// CHECK-NOT: Traceback

builtin.module {
  hbm_isa.stream {
    hbm_isa.signal tok 0
  }
  sram_isa.stream {
    sram_isa.wait cores 0 to 2 tok 9
  }
}
