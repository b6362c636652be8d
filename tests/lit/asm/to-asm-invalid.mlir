// RUN: not hpim translate %s --to-asm 2>&1 | filecheck %s

// --to-asm verifies the module first; the verifier's message carries the file, line and column.

hbm_isa.stream {
  hbm_isa.gemv ch 3 to 3 row 0 rows 1 cols 1
}

// CHECK:      hpim translate: error: {{.*}}to-asm-invalid.mlir:6:3
// CHECK:      'hbm_isa.gemv': channel range 3 to 3 is empty
