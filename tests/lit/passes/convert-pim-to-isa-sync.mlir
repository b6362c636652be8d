// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim{kv-cache=sram},pim-tile-hbm,pim-tile-sram{max-context=8},pim-schedule,pim-insert-pipeline,convert-pim-to-isa' | filecheck %s
// RUN: hpim import opt-125m | not hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-tile-sram{max-context=64},convert-pim-to-isa' 2>&1 | filecheck %s --check-prefix=NOSYNC
// RUN: hpim import opt-125m | not hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-schedule,pim-insert-pipeline,convert-pim-to-isa' 2>&1 | filecheck %s --check-prefix=NOTILE

// K and V sent in pieces to a KV cache resident in SRAM-PIM. OPT-30B on `hpim`: 56 heads of
// 128 on 56 channels of 64 banks, so a channel's head is 2 output groups and K crosses in
// 2 pieces (rows 0..63, then 64..127 of every channel). 56 heads on 32 cores run in phases,
// 2 heads a core, so core k loads heads 2k and 2k + 1 in 2 loads of one head each. The first
// load already reads a whole head, rows of both pieces: it waits for both tokens, and the
// second load needs no further wait.
// CHECK-LABEL: hbm_isa.stream attributes {section = "layers"
// CHECK: hbm_isa.readout ch 0 to 56 n 4 {data = {dst = "[[K:v[0-9]+]]"
// CHECK-NEXT: hbm_isa.signal tok [[K0:[0-9]+]]
// CHECK: hbm_isa.readout ch 0 to 56 n 4 {data = {dst = "[[K]]"
// CHECK-NEXT: hbm_isa.signal tok [[K1:[0-9]+]]
// CHECK-LABEL: sram_isa.stream attributes {section = "layers"
// CHECK: sram_isa.wait cores 0 to 32 tok [[K0]]
// CHECK-NEXT: sram_isa.wait cores 0 to 32 tok [[K1]]
// CHECK-NEXT: sram_isa.load cores 0 to 28 dst [[KB:[0-9]+]] bytes 256 {{.*}}data = {src = "[[K]]", piece = 0 : i64, pieces = 2 : i64}
// CHECK-NEXT: sram_isa.load cores 0 to 28 dst [[KB]] bytes 256 {{.*}}data = {src = "[[K]]", piece = 1 : i64, pieces = 2 : i64}
// CHECK-NEXT: sram_isa.alloc
// CHECK-NEXT: sram_isa.transpose cores 0 to 28 {{.*}} src0 [[KB]]

// The lowering needs the passes before it, and says which one is missing.
// NOSYNC: convert-pim-to-isa: a pim.transfer has no pim.signal after it; run pim-schedule and pim-insert-pipeline first
// NOTILE: convert-pim-to-isa: 'pim.kv_append' on #pim.sram has no tile; run pim-tile-sram first
