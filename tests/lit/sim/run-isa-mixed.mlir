// Both subsystems of a mixed program, no sync: HBM-PIM reads out three bursts on channel 0
// (RD_OUT at 0, 4, 8; the last complete at 29 HBM cycles = 22.3 ns), SRAM-PIM core 0 runs
// 30 scalar operations (2 to 32 ns). Both are busy from 2 ns to 290/13 ns.

// RUN: hpim run-isa %s --hw hpim | filecheck %s
// CHECK-LABEL: hardware
// CHECK: step           32.0 ns
// CHECK: HBM-PIM        29 cycles (22.3 ns); busy 29 (22.3 ns), idle 13; 1 of 64 channels busy
// CHECK: SRAM-PIM       32 cycles (32.0 ns); busy 30 (30.0 ns), idle 2; 1 of 32 cores busy
// CHECK: overlap        20.3 ns with both busy

// RUN: hpim run-isa %s --hw hpim --json | filecheck %s --check-prefix=JSON
// JSON: "ns": 32.0,
// JSON: "overlap_ns": 20.307692307692
// JSON: "hbm": {
// JSON: "cycles": 29,
// JSON: "sram": {
// JSON: "cycles": 32,

builtin.module {
  hbm_isa.stream {
    hbm_isa.readout ch 0 to 1 n 3
  }
  sram_isa.stream {
    sram_isa.scalar cores 0 to 1 n 30
  }
}
