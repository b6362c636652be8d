// One attention block of an OPT-125m-sized layer (hidden 768, 12 heads of 64) on HPIM,
// written by hand: the K, Q and V projections and the output projection are GEMVs on
// HBM-PIM (one head per channel), the attention itself runs on SRAM-PIM (one head per
// core, its K^T and V resident in the core's PIM macros), and the two streams synchronize
// through tokens in both directions. Simulate it with
//
//   hpim run-isa examples/attention_head.mlir --hw hpim --ctx 512
//
// Tokens: 0 SRAM->HBM the normalized hidden state is in HBM-PIM's input buffers;
// 1, 2, 3 HBM->SRAM K, Q, V of every head are ready; 4 SRAM->HBM the attention output
// has been sent; 5 HBM->SRAM the output projection is ready. docs/scheduler.md walks
// through the timeline.

builtin.module {
  // --- HBM-PIM: the projections, head h's on channel h (the paper's head-wise mapping).
  // A head's 768 x 64 weights fill one and a half DRAM rows: 32 columns of row R, then 16
  // of row R + 1 (the input vector is 48 bursts of 16 FP16 values; the global buffer holds
  // 32 at a time). K comes first, then Q, then V, so SRAM-PIM works on K while HBM-PIM
  // makes Q and V (the paper's pipeline).
  hbm_isa.stream attributes {section = "attention"} {
    hbm_isa.wait tok 0
    // K
    hbm_isa.load_gb ch 0 to 12 cols 32
    hbm_isa.gemv ch 0 to 12 row 0 rows 1 cols 32
    hbm_isa.load_gb ch 0 to 12 cols 16
    hbm_isa.gemv ch 0 to 12 row 1 rows 1 cols 16
    hbm_isa.readout ch 0 to 12 n 4
    hbm_isa.signal tok 1
    // Q
    hbm_isa.load_gb ch 0 to 12 cols 32
    hbm_isa.gemv ch 0 to 12 row 2 rows 1 cols 32
    hbm_isa.load_gb ch 0 to 12 cols 16
    hbm_isa.gemv ch 0 to 12 row 3 rows 1 cols 16
    hbm_isa.readout ch 0 to 12 n 4
    hbm_isa.signal tok 2
    // V
    hbm_isa.load_gb ch 0 to 12 cols 32
    hbm_isa.gemv ch 0 to 12 row 4 rows 1 cols 32
    hbm_isa.load_gb ch 0 to 12 cols 16
    hbm_isa.gemv ch 0 to 12 row 5 rows 1 cols 16
    hbm_isa.readout ch 0 to 12 n 4
    hbm_isa.signal tok 3
    // The output projection (768 x 768, 64 outputs per channel) needs every head's output.
    hbm_isa.wait tok 4
    hbm_isa.load_gb ch 0 to 12 cols 32
    hbm_isa.gemv ch 0 to 12 row 6 rows 1 cols 32
    hbm_isa.load_gb ch 0 to 12 cols 16
    hbm_isa.gemv ch 0 to 12 row 7 rows 1 cols 16
    hbm_isa.readout ch 0 to 12 n 4
    hbm_isa.signal tok 5
  }
  // --- SRAM-PIM: core h runs head h; the hidden state is spread over cores 0..11
  // (64 values, 128 B each).
  sram_isa.stream attributes {section = "attention"} {
    // The KV cache of the head, resident in the macros: K^T (64 x ctx+1) and V (ctx+1 x 64),
    // with room for this step's key and value.
    sram_isa.alloc pim cores 0 to 12 dst 0 rows 64 cols "ctx + 1"
    sram_isa.alloc pim cores 0 to 12 dst 1 rows "ctx + 1" cols 64
    sram_isa.alloc am cores 0 to 12 dst 2 bytes 128
    sram_isa.alloc am cores 0 to 12 dst 3 bytes 128
    // LayerNorm: combine the mean and variance partial sums (8 B per core), normalize,
    // send the result to HBM-PIM's input buffers, and tell HBM-PIM.
    sram_isa.allgather cores 0 to 12 dst 3 src0 2 bytes 8
    sram_isa.vcu layernorm cores 0 to 12 dst 3 src0 2 n 64
    sram_isa.store cores 0 to 12 src0 3 bytes 128
    sram_isa.signal cores 0 to 12 tok 0
    // K arrives: transpose it into a K^T column and write that into the macros.
    sram_isa.alloc am cores 0 to 12 dst 4 bytes 128
    sram_isa.wait cores 0 to 12 tok 1
    sram_isa.load cores 0 to 12 dst 4 bytes 128
    sram_isa.alloc am cores 0 to 12 dst 5 bytes 128
    sram_isa.transpose cores 0 to 12 dst 5 src0 4 rows 1 cols 64
    sram_isa.macro_write cores 0 to 12 dst 0 src0 5 rows 64 cols 1
    // Q arrives: the scores q . K^T over the whole context, then their softmax.
    sram_isa.alloc am cores 0 to 12 dst 6 bytes 128
    sram_isa.wait cores 0 to 12 tok 2
    sram_isa.load cores 0 to 12 dst 6 bytes 128
    sram_isa.alloc am cores 0 to 12 dst 7 bytes "2*ctx + 2"
    sram_isa.mvm cores 0 to 12 dst 7 src0 6 src1 0 rows 64 cols "ctx + 1"
    sram_isa.vcu softmax cores 0 to 12 dst 7 src0 7 n "ctx + 1"
    // V arrives: a new row of the V cache, then s . V.
    sram_isa.alloc am cores 0 to 12 dst 8 bytes 128
    sram_isa.wait cores 0 to 12 tok 3
    sram_isa.load cores 0 to 12 dst 8 bytes 128
    sram_isa.macro_write cores 0 to 12 dst 1 src0 8 rows 1 cols 64
    sram_isa.alloc am cores 0 to 12 dst 9 bytes 128
    sram_isa.mvm cores 0 to 12 dst 9 src0 7 src1 1 rows "ctx + 1" cols 64
    // Every head's output goes to HBM-PIM for the output projection.
    sram_isa.store cores 0 to 12 src0 9 bytes 128
    sram_isa.signal cores 0 to 12 tok 4
    // The projection comes back; the residual add.
    sram_isa.alloc am cores 0 to 12 dst 10 bytes 128
    sram_isa.wait cores 0 to 12 tok 5
    sram_isa.load cores 0 to 12 dst 10 bytes 128
    sram_isa.vcu add cores 0 to 12 dst 2 src0 2 src1 10 n 64
  }
}
