// RUN: hpim translate %s --to-asm | filecheck %s
// RUN: hpim-opt %s -o %t.expected
// RUN: hpim translate %s --to-asm | hpim translate - --from-asm | hpim-opt | diff %t.expected -

// mlir -> asm gives the canonical text, and asm -> mlir gives back the same IR.

hbm_isa.stream {
  hbm_isa.load_gb ch 0 to 16 cols 32
  hbm_isa.gemv ch 0 to 16 row 128 rows 4 cols 32
  hbm_isa.barrier
  hbm_isa.readout ch 3 to 4 n 2
  hbm_isa.signal tok 1
}

// CHECK:      {{^}}hbm.load_gb ch=0:16 cols=32{{$}}
// CHECK-NEXT: {{^}}hbm.gemv ch=0:16 row=128 rows=4 cols=32{{$}}
// CHECK-NEXT: {{^}}hbm.barrier{{$}}
// CHECK-NEXT: {{^}}hbm.readout ch=3 n=2{{$}}
// CHECK-NEXT: {{^}}hbm.signal tok=1{{$}}
