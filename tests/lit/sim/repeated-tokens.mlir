// Tokens of a repeated section are renumbered per iteration: each iteration's SRAM-PIM wait
// is for that iteration's HBM-PIM signal. RD_OUTs at 0, 4, 8 HBM cycles, each token raised
// when its RD_OUT completes (21, 25, 29 = 16.2, 19.2, 22.3 ns); core 0 leaves its waits at
// 17, 20, 23 and its last scalar completes at 25.

// RUN: hpim run-isa %s --hw hpim --json | filecheck %s
// CHECK: "tokens": {
// CHECK-NEXT: "0": {
// CHECK-NEXT: "by": "hbm",
// CHECK-NEXT: "ns": 16.153846153846
// CHECK: "2": {
// CHECK-NEXT: "by": "hbm",
// CHECK-NEXT: "ns": 22.307692307692

// RUN: hpim run-isa %s --hw hpim | filecheck %s --check-prefix=SUMMARY
// SUMMARY: program        1 section(s), 6 HBM-PIM + 6 SRAM-PIM records unrolled, ctx 0
// SUMMARY: SRAM-PIM       25 cycles (25.0 ns)

builtin.module {
  hbm_isa.stream attributes {section = "layers", repeat = 3 : i64} {
    hbm_isa.readout ch 0 to 1 n 1
    hbm_isa.signal tok 0
  }
  sram_isa.stream attributes {section = "layers", repeat = 3 : i64} {
    sram_isa.wait cores 0 to 1 tok 0
    sram_isa.scalar cores 0 to 1 n 1
  }
}
