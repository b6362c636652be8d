// RUN: not hpim translate %s --to-asm 2>&1 | filecheck %s

// A module without an hbm_isa.stream or sram_isa.stream has no assembly.

func.func @f() {
  func.return
}

// CHECK: hpim translate: error: <module>: no hbm_isa.stream or sram_isa.stream in the module
