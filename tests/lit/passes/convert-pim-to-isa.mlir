// RUN: hpim import opt-125m | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm,pim-tile-sram{max-context=256},pim-schedule,pim-insert-pipeline,convert-pim-to-isa' | filecheck %s
// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-hbm,pim-tile-sram,pim-schedule,pim-insert-pipeline,convert-pim-to-isa' | filecheck %s --check-prefix=KVHBM
// RUN: hpim import opt-6.7b | hpim-opt -p 'convert-llm-to-pim{policy=hbm-only},pim-tile-hbm,pim-tile-sram,pim-schedule,pim-insert-pipeline,convert-pim-to-isa' | filecheck %s --check-prefix=HBMONLY

// OPT-125M's decode step as three sections of two streams. The layer section exists once,
// repeated 12 times; its HBM rows move on by the layer stride.
// CHECK: hbm_isa.stream attributes {section = "prologue"
// CHECK: sram_isa.stream attributes {section = "prologue"
// The resident KV caches: every layer's K^T (12 x 64 rows) and V, ctx + 1 wide, split over
// the two cores of each head.
// CHECK: sram_isa.alloc pim cores 0 to 24 dst [[KT:[0-9]+]] rows 768 cols "ceildiv(ctx + 1, 2)"
// CHECK-LABEL: hbm_isa.stream attributes {section = "layers", repeat = 12 : i64, row_stride = 22 : i64}
// Q, K, V wait for the LayerNorm output, then stream their rows through the bank PUs.
// CHECK: hbm_isa.wait tok [[LN:[0-9]+]]
// Each instruction says what it computes (`data`, docs/functional.md): the global buffer
// holds the LayerNorm output from element 0; q_proj's 12 heads of 64 rows fill the banks of
// channels 0..11, a head each (`pim-tile-hbm{fill=all}`), the bias preloaded; the readout
// delivers Q. K's heads follow on channels 12..23, computing at the same time.
// CHECK: hbm_isa.load_gb ch 0 to 12 cols 32 {data = {src = "[[LNV:v[0-9]+]]", at = 0 : i64}
// CHECK-NEXT: hbm_isa.gemv ch 0 to 12 row 0 rows 1 cols 32 {data = {w = "q_proj", out = 0 : i64, rows = 64 : i64, group = 0 : i64, at = 0 : i64, bias = "q_proj.bias"}
// CHECK: hbm_isa.gemv ch 0 to 12 row 1 rows 1 cols 16 {data = {w = "q_proj", out = 0 : i64, rows = 64 : i64, group = 0 : i64, at = 512 : i64}
// CHECK: hbm_isa.readout ch 0 to 12 n 4 {data = {dst = "{{v[0-9]+}}", size = 768 : i64, per_ctx = 0 : i64}
// CHECK: hbm_isa.gemv ch 12 to 24 row 3 rows 1 cols 32 {data = {w = "k_proj", out = 0 : i64, rows = 64 : i64
// CHECK: hbm_isa.signal tok [[K:[0-9]+]]
// CHECK-LABEL: sram_isa.stream attributes {section = "layers", repeat = 12 : i64}
// CHECK: sram_isa.allgather cores 0 to 32 {{.*}} {part = "other", data = {stat = "moments"}}
// CHECK-NEXT: sram_isa.vcu layernorm {{.*}} data = {w = "attn_norm", eps = {{.*}}, b = "attn_norm.bias"}}
// CHECK: sram_isa.store {{.*}} data = {dst = "[[LNV]]"}}
// CHECK-NEXT: sram_isa.signal cores 0 to 32 tok [[LN]]
// K arrives, is transposed and written into the cache's macros as a K^T column.
// CHECK: sram_isa.wait cores 0 to 32 tok [[K]]
// CHECK-NEXT: sram_isa.load cores 0 to 24 dst [[KB:[0-9]+]] bytes 128
// CHECK: sram_isa.transpose cores 0 to 24 dst [[KC:[0-9]+]] src0 [[KB]] rows 1 cols 64
// CHECK-NEXT: sram_isa.macro_write cores 0 to 24 dst [[KT]] src0 [[KC]] rows 64 cols 1
// q.K^T over the symbolic context, each head over 2 cores; their softmax statistics meet.
// CHECK: sram_isa.mvm cores 0 to 24 dst [[S:[0-9]+]] src0 {{[0-9]+}} src1 [[KT]] rows 64 cols "ceildiv(ctx + 1, 2)"
// CHECK: sram_isa.allgather cores 0 to 2 dst {{[0-9]+}} src0 [[S]] bytes 8
// CHECK: sram_isa.vcu softmax cores 0 to 24 dst [[S]] src0 [[S]] n "ceildiv(ctx + 1, 2)"
// CHECK: sram_isa.reduce cores 0 to 2
// CHECK-LABEL: hbm_isa.stream attributes {section = "epilogue"
// CHECK-NOT: {{[ "]llm\.}}
// CHECK-NOT: {{[ "]pim\.}}

// A KV cache in HBM (OPT-30B): HBM-PIM appends the token's K (7168 x 2 B over 64 channels:
// 224 B, one column of every bank) and reads the cached context back, 224 B per token and
// channel in stripes of 64 banks x 8 columns x 32 B = 16 KiB: ceil(7 ctx / 512) stripes in
// all (none at ctx 0), in 4 pieces raising a token each. Piece i reads stripes i, i + 4, ...,
// exactly its share: ceil((7 ctx - 512 i) / 2048), from the i-th quarter of the cache's rows:
// a stripe is a row of every bank, 7 x 2048 / 512 = 28 for OPT's 2048 positions, so K
// (V) takes 28 rows per layer and piece i starts 7 i rows in. SRAM-PIM streams each piece through its macros as it arrives, ctx + 1 keys in all
// (the step's own K comes from the GEMV's readout, not from the cache), piece i every 4th
// key from key i on: ceil((ctx + 1 - i) / 4); OPT-30B's 56 heads run in two phases on 28
// cores.
// KVHBM-LABEL: hbm_isa.stream attributes {section = "layers", repeat = 48 : i64, row_stride = 384 : i64}
// KVHBM: hbm_isa.write ch 0 to 64 row 328 rows 1 cols 1
// KVHBM-NEXT: hbm_isa.read ch 0 to 64 row 328 rows 0 cols 8 ctx 7 / 2048 {
// KVHBM-NEXT: hbm_isa.signal tok [[K0:[0-9]+]]
// KVHBM-NEXT: hbm_isa.read ch 0 to 64 row 335 rows 0 cols 8 ctx 7 / 2048 off -512 {
// KVHBM-NEXT: hbm_isa.signal tok [[K1:[0-9]+]]
// KVHBM-NEXT: hbm_isa.read ch 0 to 64 row 342 rows 0 cols 8 ctx 7 / 2048 off -1024 {
// KVHBM-NEXT: hbm_isa.signal tok [[K2:[0-9]+]]
// KVHBM-NEXT: hbm_isa.read ch 0 to 64 row 349 rows 0 cols 8 ctx 7 / 2048 off -1536 {
// KVHBM-NEXT: hbm_isa.signal tok [[K3:[0-9]+]]
// KVHBM-LABEL: sram_isa.stream attributes {section = "layers"
// KVHBM: sram_isa.wait cores 0 to 32 tok [[K0]]
// KVHBM-NEXT: sram_isa.stream_mvm cores 0 to 28 dst {{[0-9]+}} src0 {{[0-9]+}} rows 128 cols "ceildiv(ctx + 1, 4)"
// KVHBM-NEXT: sram_isa.wait cores 0 to 32 tok [[K1]]
// KVHBM-NEXT: sram_isa.stream_mvm cores 0 to 28 dst {{[0-9]+}} src0 {{[0-9]+}} rows 128 cols "ceildiv(ctx, 4)"
// KVHBM-NEXT: sram_isa.wait cores 0 to 32 tok [[K2]]
// KVHBM-NEXT: sram_isa.stream_mvm cores 0 to 28 dst {{[0-9]+}} src0 {{[0-9]+}} rows 128 cols "ceildiv(ctx - 1, 4)"
// KVHBM-NEXT: sram_isa.wait cores 0 to 32 tok [[K3]]
// KVHBM-NEXT: sram_isa.stream_mvm cores 0 to 28 dst {{[0-9]+}} src0 {{[0-9]+}} rows 128 cols "ceildiv(ctx - 2, 4)"

// hbm-only (AttAcc-style), OPT-6.7B: K is appended in HBM and q.K^T runs there, one head per
// channel over its cache rows: 1 + ceil(ctx / 256) rows of 64 banks x 512 values for 128-dim
// keys; the ctx + 1 scores go to SRAM-PIM for the softmax and come back for s.V.
// HBMONLY-LABEL: hbm_isa.stream attributes {section = "layers"
// HBMONLY: hbm_isa.write ch 0 to 64 row {{[0-9]+}} rows 1 cols 1
// HBMONLY-NOT: hbm_isa.read
// HBMONLY: hbm_isa.gemv ch 0 to 32 row {{[0-9]+}} rows 1 cols 32 ctx 1 / 256 {data = {kind = "scores", cache = "key_cache", rounds = 1 : i64, heads = 32 : i64, kv_heads = 32 : i64, scale = {{.*}}, round = 0 : i64}, part = "attention"}
// HBMONLY-NEXT: hbm_isa.readout ch 0 to 32 n 1 ctx 1 / 16
// HBMONLY-NEXT: hbm_isa.signal
// HBMONLY-LABEL: sram_isa.stream attributes {section = "layers"
// HBMONLY: sram_isa.vcu softmax cores 0 to 32 {{.*}} n "ceildiv(64*ctx + 64, 64)"

