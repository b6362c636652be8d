// RUN: hpim import opt-30b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm{hw=hpim}' | filecheck %s --check-prefix=OPT30
// RUN: hpim import llama-3-8b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm{hw=hpim}' | filecheck %s --check-prefix=GQA
// RUN: hpim import llama-2-70b | not hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm' 2>&1 | filecheck %s --check-prefix=FIT70
// RUN: hpim import opt-13b | hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm{hw=hpim qkv=row}' | filecheck %s --check-prefix=ROW
// RUN: hpim import opt-66b | not hpim-opt -p 'convert-llm-to-pim,pim-tile-hbm{hw="hbm3-5.2gbps"}' 2>&1 | filecheck %s --check-prefix=FIT

// The hpim machine: 4 stacks x 16 channels = 64 channels, 64 banks per channel, DRAM rows of
// 512 FP16. OPT-30B (hidden 7168, 56 heads of 128): Q/K/V head-wise, one head per channel on
// 56 channels (128 rows each: 2 groups per bank); 7168 inputs = 14 segments of 512.
// Layer-major rows: q_proj takes 2 x 14 = 28 rows per bank, then its bias 1 row, then k_proj.
// OPT30: pim.weight @q_proj layered {{.*}}placement = {row_base = 0 : i64, rows = 28 : i64, layer_stride = 328 : i64, channels = 56 : i64, channel_lo = 0 : i64, on = "hbm"}
// OPT30: pim.weight @k_proj layered {{.*}}placement = {row_base = 29 : i64, rows = 28 : i64
// OPT30-LABEL: func.func @decode_step
// OPT30: pim.linear {{.*}}tile = {scheme = "head", in_features = 7168 : i64, out_features = 7168 : i64, channel_lo = 0 : i64, channels_hi = 56 : i64, rows_hi = 128 : i64, channels_lo = 0 : i64, rows_lo = 0 : i64, heads_per_channel = 0 : i64, channels_per_head = 1 : i64, segments = 14 : i64, segment_cols = 32 : i64, last_cols = 32 : i64, groups = 2 : i64}
// The output projection and the FFN are row-wise over all 64 channels: fc1 has 28672 rows,
// 448 per channel, 7 groups per bank.
// OPT30: pim.linear {{.*}}tile = {scheme = "row", {{.*}}out_features = 7168 : i64, channel_lo = 0 : i64, channels_hi = 64 : i64, rows_hi = 112 : i64
// OPT30: pim.linear {{.*}}tile = {scheme = "row", {{.*}}out_features = 28672 : i64, channel_lo = 0 : i64, channels_hi = 64 : i64, rows_hi = 448 : i64, {{.*}}groups = 7 : i64}
// The LM head's 50272 rows do not divide by 64: 32 channels take 786 rows, 32 take 785.
// OPT30: pim.linear {{.*}}tile = {scheme = "row", {{.*}}out_features = 50272 : i64, channel_lo = 0 : i64, channels_hi = 32 : i64, rows_hi = 786 : i64, channels_lo = 32 : i64, rows_lo = 785 : i64

// LLaMA-3-8B: 32 query heads, each over 2 channels (64 of its 128 rows per channel). Its 8
// key/value heads fill the banks: each over min(64 // 8, ceil(128 / 64)) = 2 channels of 64
// rows (not 8 channels of 16), K on channels 0..15 and V beside it on 16..31; one output
// group per bank either way, so each costs what it did, and the two can run at once.
// GQA: pim.weight @k_proj layered {{.*}}placement = {row_base = 8 : i64, rows = 8 : i64, layer_stride = 124 : i64, channels = 16 : i64, channel_lo = 0 : i64, on = "hbm"}
// GQA: pim.weight @v_proj layered {{.*}}placement = {row_base = 16 : i64, rows = 8 : i64, layer_stride = 124 : i64, channels = 16 : i64, channel_lo = 16 : i64, on = "hbm"}
// GQA-LABEL: func.func @decode_step
// GQA: pim.linear {{.*}}tile = {scheme = "head", in_features = 4096 : i64, out_features = 4096 : i64, channel_lo = 0 : i64, channels_hi = 64 : i64, rows_hi = 64 : i64, {{.*}}channels_per_head = 2 : i64
// GQA: pim.linear {{.*}}tile = {scheme = "head", in_features = 4096 : i64, out_features = 1024 : i64, channel_lo = 0 : i64, channels_hi = 16 : i64, rows_hi = 64 : i64, channels_lo = 0 : i64, rows_lo = 0 : i64, heads_per_channel = 0 : i64, channels_per_head = 2 : i64, segments = 8 : i64, segment_cols = 32 : i64, last_cols = 32 : i64, groups = 1 : i64}
// GQA: pim.linear {{.*}}tile = {scheme = "head", in_features = 4096 : i64, out_features = 1024 : i64, channel_lo = 16 : i64, channels_hi = 16 : i64, rows_hi = 64 : i64

// LLaMA-2-70B's 138 GB of FP16 weights exceed the hpim machine's 96 GiB.
// FIT70: hpim-opt: error: the model's weights do not fit in HBM: needs 146,016,305,152 bytes (34813 rows per bank), 103,079,215,104 available (24576 rows per bank)

// qkv=row: OPT-13B's 40 heads would leave 24 channels idle head-wise; row-wise 5120 rows
// are 80 per channel.
// ROW: pim.linear {{.*}}tile = {scheme = "row", in_features = 5120 : i64, out_features = 5120 : i64, channel_lo = 0 : i64, channels_hi = 64 : i64, rows_hi = 80 : i64

// One HBM3 stack holds 16 GiB; OPT-66B's 131 GB of weights do not fit.
// FIT: hpim-opt: error: the model's weights do not fit in HBM: needs {{[0-9,]+}} bytes ({{[0-9]+}} rows per bank), 17,179,869,184 available (16384 rows per bank)
