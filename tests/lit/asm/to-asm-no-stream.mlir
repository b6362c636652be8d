// RUN: not hpim translate %s --to-asm 2>&1 | filecheck %s

// A module without an hbm_isa.stream has no assembly.

func.func @f() {
  func.return
}

// CHECK: hpim translate: error: expected an hbm_isa.stream in the module, found none
