// RUN: hpim import opt-125m --phase prefill --prompt 8 | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-hbm,pim-tile-sram,convert-pim-to-isa' | filecheck %s
// RUN: hpim import opt-125m --phase prefill --prompt 8 | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-hbm,pim-tile-sram,convert-pim-to-isa' | filecheck %s --check-prefix=NOIR
// RUN: hpim import opt-125m --phase prefill --prompt 8 | hpim-opt -p 'convert-llm-to-pim{kv-cache=hbm},pim-tile-hbm,pim-tile-sram,convert-pim-to-isa{all_logits=true}' | filecheck %s --check-prefix=ALL
// RUN: hpim import opt-125m --phase prefill --prompt 8 | not hpim-opt -p 'convert-llm-to-pim{policy=hbm-only},pim-tile-hbm,pim-tile-sram,convert-pim-to-isa' 2>&1 | filecheck %s --check-prefix=HBMONLY

// OPT-125M's prefill of 8 tokens: one chunk (prologue, 12 layers), then the epilogue.
// CHECK: hbm_isa.stream attributes {section = "prologue.0"
// HBM-PIM reads q_proj's first tile (192 of its 768 input rows) in normal mode from the 12
// channels a decode step's Q GEMV runs on (12 heads of 64 rows, one channel's 64 banks each):
// 192 x 768 x 2 B over 12 channels = 24 KiB per channel = 12 columns of its 64 banks (2 KiB
// each); and raises the tile's token. Its `data`: input rows 0..191 of each core's 24 columns.
// CHECK-LABEL: hbm_isa.stream attributes {section = "layers.0", repeat = 12 : i64
// CHECK-NEXT: hbm_isa.read ch 0 to 12 row 0 rows 1 cols 12 {part = "qkv", data = {dst = "q_proj.0", w = "q_proj", at = 0 : i64, inputs = 192 : i64, first = 0 : i64, columns = 24 : i64, per_core = 24 : i64}}
// CHECK-NEXT: hbm_isa.signal tok [[READY:[0-9]+]]
// Tile 2 is read only once the cores have loaded tile 0.
// CHECK: hbm_isa.wait tok [[FREE:[0-9]+]]
// The chunk's K and V go to the cache in HBM after the layer's weights.
// CHECK: hbm_isa.write
// CHECK: hbm_isa.write
// CHECK-LABEL: sram_isa.stream attributes {section = "layers.0", repeat = 12 : i64}
// Each core gathers the tile's slice of the LayerNorm output (8 x 192 x 2 B / 32 cores =
// 96 B from each), waits for the tile, loads its 24 output columns of it (192 x 24 x 2 B),
// frees the tile on HBM-PIM's side, and multiplies on its TCU (8 tokens), its
// accumulators starting from the bias.
// CHECK: sram_isa.allgather cores 0 to 32 dst [[X:[0-9]+]] src0 {{[0-9]+}} bytes 96 {part = "qkv", data = {at = 0 : i64, inputs = 192 : i64}}
// CHECK-NEXT: sram_isa.wait cores 0 to 32 tok [[READY]]
// CHECK-NEXT: sram_isa.load cores 0 to 32 dst [[W:[0-9]+]] bytes 9216 {part = "qkv", data = {src = "q_proj.0"}}
// CHECK-NEXT: sram_isa.signal cores 0 to 32 tok [[FREE]]
// CHECK-NEXT: sram_isa.gemm cores 0 to 32 dst {{[0-9]+}} src0 [[X]] src1 [[W]] m 8 n 24 k 192 {part = "qkv", data = {kind = "linear", start = 1 : i64, bias = "q_proj.bias"}}
// Attention per head on 24 cores (12 heads, 2 cores each, 4 queries per core): q.K^T,
// softmax, s.V.
// CHECK: sram_isa.gemm cores 0 to 24 dst [[S:[0-9]+]] {{.*}} m 4 n 8 k 64 {part = "attention", data = {{{.*}}kind = "scores", phase = 0 : i64}}
// CHECK-NEXT: sram_isa.vcu softmax cores 0 to 24 dst [[S]] src0 [[S]] n 32
// CHECK-NEXT: sram_isa.gemm cores 0 to 24 {{.*}} src0 [[S]] {{.*}} m 4 n 64 k 8
// The final norm and the LM head for the last token (`last`: of the hidden state), in
// column blocks of the vocabulary.
// CHECK-LABEL: sram_isa.stream attributes {section = "epilogue"
// CHECK: sram_isa.vcu layernorm {{.*}} last = 1 : i64}}
// CHECK: sram_isa.gemm cores 0 to 32 {{.*}} m 1 n {{[0-9]+}} k 64 {part = "other", data = {kind = "linear", start = 1 : i64}}

// With all_logits, an epilogue after the chunk computes the LM head for its 8 tokens.
// ALL-LABEL: sram_isa.stream attributes {section = "epilogue.0"
// ALL: sram_isa.gemm cores 0 to 32 {{.*}} m 8 n {{[0-9]+}} k 64 {part = "other"

// HBMONLY: the prefill's 'pim.linear' is placed on #pim.hbm

// Nothing of the llm or pim dialects is left.
// NOIR-NOT: {{^ *(llm|pim)\.}}
