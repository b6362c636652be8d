// RUN: hpim import opt-125m | hpim-opt -p 'hpim-lower{kv-cache=sram max-context=128}' | filecheck %s
// RUN: hpim import llama-3-8b | hpim-opt -p 'hpim-lower{kv-cache=sram max-context=16}' | filecheck %s --check-prefix=LLAMA
// RUN: hpim import opt-125m | not hpim-opt -p 'hpim-lower{hw="hbm3-5.2gbps"}' 2>&1 | filecheck %s --check-prefix=NOSRAM

// The whole chain: nothing of llm or pim remains, only the two ISAs.
// CHECK: builtin.module attributes {{{.*}}hpim.model = {name = "opt-125m"
// CHECK-NOT: {{[ "]llm\.}}
// CHECK-NOT: {{[ "]pim\.}}
// CHECK: hbm_isa.stream attributes {section = "layers", repeat = 12 : i64
// CHECK-NOT: {{[ "]llm\.}}
// CHECK-NOT: {{[ "]pim\.}}
// CHECK: sram_isa.stream attributes {section = "epilogue"
// CHECK-NOT: {{[ "]llm\.}}
// CHECK-NOT: {{[ "]pim\.}}

// LLaMA-3-8B: RMSNorm and RoPE on the VCU, the 32 query heads one per core.
// LLAMA-LABEL: sram_isa.stream attributes {section = "layers", repeat = 32 : i64}
// LLAMA: sram_isa.vcu rmsnorm
// LLAMA: sram_isa.vcu rope cores 0 to 32
// LLAMA: sram_isa.mvm cores 0 to 32
// LLAMA-NOT: {{[ "]pim\.}}

// An HBM-only machine has no SRAM-PIM cores to tile for.
// NOSRAM: hpim-opt: error: hardware 'hbm3-5.2gbps' has no [sram] section: it has no SRAM-PIM cores
