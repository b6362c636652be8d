// RUN: hpim-opt %s --split-input-file --verify-diagnostics | filecheck %s

// Every verifier message of the sram_isa dialect: each names the op, the field and the bad value.
// Bounds that need the hardware (a core below the machine's core count, live buffers) are
// checked when simulating.

// --- the stream

sram_isa.stream {
  %c = arith.constant 0 : i64
}
// CHECK: 'sram_isa.stream': 'arith.constant' is not an sram_isa instruction

// -----

sram_isa.stream attributes {repeat = 0 : i64} {
}
// CHECK: 'sram_isa.stream': repeat must be at least 1, got 0

// -----

sram_isa.barrier
// CHECK: 'sram_isa.barrier' expects parent op 'sram_isa.stream'

// -----

// --- kinds: vcu and alloc have one, nothing else does

sram_isa.stream {
  sram_isa.load softmax dst 3 bytes 4
}
// CHECK: 'sram_isa.load': takes no kind, got "softmax"

// -----

sram_isa.stream {
  sram_isa.vcu "tanh" dst 3 src0 1 n 4
}
// CHECK: 'sram_isa.vcu': kind "tanh" is unknown (one of exp, max, sum, softmax, layernorm, rmsnorm, gelu, relu, silu, mul, add, rope)

// -----

sram_isa.stream {
  sram_isa.alloc dst 3 bytes 4
}
// CHECK: 'sram_isa.alloc': kind is required (one of am, pim)

// -----

// --- core ranges

sram_isa.stream {
  "sram_isa.barrier"() <{core_lo = 0 : i64}> : () -> ()
}
// CHECK: 'sram_isa.barrier': core_lo and core_hi go together: give a range, or neither for every core

// -----

sram_isa.stream {
  sram_isa.barrier cores -1 to 4
}
// CHECK: 'sram_isa.barrier': core range -1 to 4: core_lo must be non-negative

// -----

sram_isa.stream {
  sram_isa.signal cores 4 to 4 tok 1
}
// CHECK: 'sram_isa.signal': core range 4 to 4 is empty

// -----

sram_isa.stream {
  sram_isa.free cores 0 to 40000 dst 1
}
// CHECK: 'sram_isa.free': core range 0 to 40000: core_hi must be at most 32767

// -----

// --- buffer operands and tokens, against the op's Form

sram_isa.stream {
  sram_isa.load dst 3 src1 2 bytes 4
}
// CHECK: 'sram_isa.load': takes no src1 (its operands: dst), got 2

// -----

sram_isa.stream {
  sram_isa.barrier dst 0
}
// CHECK: 'sram_isa.barrier': takes no dst (its operands: none), got 0

// -----

sram_isa.stream {
  sram_isa.mvm dst 4 src0 3 rows 64 cols 8
}
// CHECK: 'sram_isa.mvm': src1 is required (a PIM buffer number)

// -----

sram_isa.stream {
  sram_isa.store bytes 64
}
// CHECK: 'sram_isa.store': src0 is required (an activation-memory buffer number)

// -----

sram_isa.stream {
  sram_isa.free
}
// CHECK: 'sram_isa.free': dst is required (a buffer number)

// -----

sram_isa.stream {
  sram_isa.scalar dst -1 n 4
}
// CHECK: 'sram_isa.scalar': dst must be a buffer number in 0..32767, got -1

// -----

sram_isa.stream {
  sram_isa.transpose dst 4 src0 32768 rows 1 cols 64
}
// CHECK: 'sram_isa.transpose': src0 must be a buffer number in 0..32767, got 32768

// -----

sram_isa.stream {
  sram_isa.barrier tok 3
}
// CHECK: 'sram_isa.barrier': takes no tok (only signal and wait do), got 3

// -----

sram_isa.stream {
  sram_isa.wait
}
// CHECK: 'sram_isa.wait': tok is required

// -----

sram_isa.stream {
  sram_isa.signal tok -1
}
// CHECK: 'sram_isa.signal': tok must be in 0..2147483647, got -1

// -----

// --- sizes: the Form's names, each at least 1 at every context length, within int32

sram_isa.stream {
  sram_isa.load dst 3 bytes 4 rows 2
}
// CHECK: 'sram_isa.load': takes no size rows (its sizes: bytes)

// -----

sram_isa.stream {
  sram_isa.alloc pim dst 3 bytes 4
}
// CHECK: 'sram_isa.alloc': takes no size bytes (its sizes: rows, cols)

// -----

sram_isa.stream {
  sram_isa.gemm dst 1 src0 2 src1 3 m 4 n 4
}
// CHECK: 'sram_isa.gemm': size k is required (its sizes: m, n, k)

// -----

sram_isa.stream {
  sram_isa.load dst 3 bytes 0
}
// CHECK: 'sram_isa.load': bytes must be at least 1, got 0

// -----

sram_isa.stream {
  sram_isa.vcu exp dst 3 src0 1 n "ctx - 1"
}
// CHECK: 'sram_isa.vcu': n "ctx - 1" is -1 at ctx = 0: a size must be at least 1 at every ctx >= 0

// -----

// A streamed product may be empty (a piece of a short context) but never negative.
sram_isa.stream {
  sram_isa.stream_mvm dst 3 src0 1 rows "-2*ctx + 10" cols 4
}
// CHECK: 'sram_isa.stream_mvm': rows "-2*ctx + 10" is -2 at ctx = 6: a size must be at least 0 at every ctx >= 0

// -----

sram_isa.stream {
  sram_isa.allgather dst 3 src0 1 bytes "256*ctx"
}
// CHECK: 'sram_isa.allgather': bytes "256*ctx" is 0 at ctx = 0: a size must be at least 1 at every ctx >= 0

// -----

sram_isa.stream {
  sram_isa.macro_write dst 3 src0 1 rows 4 cols "ceildiv(ctx + 1, 0)"
}
// CHECK: 'sram_isa.macro_write': cols "ceildiv(ctx + 1, 0)" divides by 0: the divisor must be at least 1

// -----

sram_isa.stream {
  sram_isa.reduce src0 1 bytes 2147483648
}
// CHECK: 'sram_isa.reduce': bytes 2147483648 does not fit a record: a, b and d of ceil((a*ctx + b)/d) are 32-bit

// -----

// --- property types, checked by IRDL

sram_isa.stream {
  "sram_isa.load"() <{dst = 3 : i64, bytes = 4 : i64}> : () -> ()
}
// CHECK: 4 : i64 should be of base attribute sram_isa.size
