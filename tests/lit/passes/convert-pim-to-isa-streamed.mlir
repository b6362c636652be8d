// A decode-step linear on SRAM-PIM whose weight stays in HBM (policies `attacc`, `pnm`):
// the prefill's streamed linear at one token, inside the decode step's sections.
// RUN: hpim compile opt-125m --policy attacc | filecheck %s
// RUN: hpim compile opt-125m --policy pnm | filecheck %s --check-prefix=PNM

// OPT-125M on `hpim`: pim-tile-hbm spreads each weight of a linear on SRAM-PIM over every
// bank, layer-major; a layer's weights and KV cache take 14 rows per bank (q/k/v/o 1 row
// each, fc1/fc2 2 each, K and V cache 3 each: their 2048 positions' stripes of 64 banks x
// 8 columns x 32 B, ceil(2048 x 24 B / 16 KiB)), so the layer loop moves rows by 14.
// CHECK-LABEL: hbm_isa.stream attributes {section = "layers", repeat = 12 : i64, row_stride = 14 : i64}
// HBM-PIM reads q_proj's first tile (192 of 768 input rows, 192 x 768 x 2 B over 64
// channels: 2.25 columns of the 64 banks, read as 3) in normal mode from layer 0's row 0.
// CHECK-NEXT: hbm_isa.read ch 0 to 64 row 0 rows 1 cols 3 {part = "qkv"
// CHECK-NEXT: hbm_isa.signal tok [[READY:[0-9]+]]
// Tile 2 is read once the cores have loaded tile 0.
// CHECK: hbm_isa.wait tok [[FREE:[0-9]+]]
// CHECK-LABEL: sram_isa.stream attributes {section = "layers", repeat = 12 : i64}
// Each core gathers the row block's slice of the LayerNorm output (192 x 2 B / 32 cores), waits
// for the tile, loads its 24 output columns of it (192 x 24 x 2 B), frees the tile on
// HBM-PIM's side and multiplies one token.
// CHECK: sram_isa.allgather cores 0 to 32 dst [[X:[0-9]+]] src0 {{[0-9]+}} bytes 12 {part = "qkv"
// CHECK-NEXT: sram_isa.wait cores 0 to 32 tok [[READY]]
// CHECK-NEXT: sram_isa.load cores 0 to 32 dst [[W:[0-9]+]] bytes 9216
// CHECK-NEXT: sram_isa.signal cores 0 to 32 tok [[FREE]]
// CHECK-NEXT: sram_isa.gemm cores 0 to 32 dst {{[0-9]+}} src0 [[X]] src1 [[W]] m 1 n 24 k 192 {part = "qkv"
// The LM head is not layered: it follows the 12 layers, from row 12 x 14 = 168.
// CHECK-LABEL: hbm_isa.stream attributes {section = "epilogue"
// CHECK-NEXT: hbm_isa.read ch 0 to 64 row 168

// `pnm`: attention on SRAM-PIM too, streaming the KV cache from HBM.
// PNM-LABEL: sram_isa.stream attributes {section = "layers"
// PNM: sram_isa.gemm cores 0 to 32 {{.*}} m 1 n 24 k 192 {part = "qkv"
// PNM: sram_isa.stream_mvm
// PNM: sram_isa.gemm cores 0 to 32 {{.*}} m 1 n 24 k 192 {part = "attention_proj"
