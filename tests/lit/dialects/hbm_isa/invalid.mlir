// RUN: hpim-opt %s --split-input-file --verify-diagnostics | filecheck %s

// Every verifier message of the hbm_isa dialect: each names the op, the field and the bad value.
// Bounds that need the hardware (row < rows of the machine, ...) are checked when simulating.

hbm_isa.stream {
  hbm_isa.wr_gb ch -1 col 5
}
// CHECK: 'hbm_isa.wr_gb': ch must be non-negative, got -1

// -----

hbm_isa.stream {
  hbm_isa.mac_ab ch 3 row -2 col 5
}
// CHECK: 'hbm_isa.mac_ab': row must be non-negative, got -2

// -----

hbm_isa.stream {
  hbm_isa.act_ab ch 3 row 2147483647
}
// CHECK: 'hbm_isa.act_ab': row must be at most 2147483646, got 2147483647

// -----

hbm_isa.stream {
  hbm_isa.barrier ch 4294967296
}
// CHECK: 'hbm_isa.barrier': ch must be at most 2147483646, got 4294967296

// -----

hbm_isa.stream {
  hbm_isa.signal tok -1
}
// CHECK: 'hbm_isa.signal': tok must be non-negative, got -1

// -----

hbm_isa.stream {
  hbm_isa.gemv ch 4 to 4 row 0 rows 1 cols 1
}
// CHECK: 'hbm_isa.gemv': channel range 4 to 4 is empty

// -----

hbm_isa.stream {
  hbm_isa.load_gb ch -1 to 4 cols 1
}
// CHECK: 'hbm_isa.load_gb': ch must be non-negative, got -1

// -----

hbm_isa.stream {
  hbm_isa.readout ch 0 to 2147483648 n 1
}
// CHECK: 'hbm_isa.readout': channel range 0 to 2147483648 must end at most at 2147483647

// -----

hbm_isa.stream {
  hbm_isa.gemv ch 0 to 16 row 0 rows 0 cols 32
}
// CHECK: 'hbm_isa.gemv': rows must be at least 1, got 0

// -----

hbm_isa.stream {
  hbm_isa.gemv ch 0 to 16 row 0 rows 4 cols 0
}
// CHECK: 'hbm_isa.gemv': cols must be at least 1, got 0

// -----

hbm_isa.stream {
  hbm_isa.readout ch 0 to 16 n 0
}
// CHECK: 'hbm_isa.readout': n must be at least 1, got 0

// -----

hbm_isa.stream {
  hbm_isa.rd ch 0 bank -1 row 0 col 0
}
// CHECK: 'hbm_isa.rd': bank must be non-negative, got -1

// -----

hbm_isa.stream {
  hbm_isa.read ch 0 to 16 row 0 rows 0 cols 32
}
// CHECK: 'hbm_isa.read': rows must be at least 1, got 0

// -----

hbm_isa.stream {
  hbm_isa.write ch 0 to 16 row 0 rows 0 cols 0 ctx 1 / 8
}
// CHECK: 'hbm_isa.write': cols must be at least 1, got 0

// -----

hbm_isa.stream {
  hbm_isa.read ch 0 to 16 row 0 rows 0 cols 32 ctx 0 / 8
}
// CHECK: 'hbm_isa.read': per_ctx must be at least 1, got 0

// -----

hbm_isa.stream {
  hbm_isa.gemv ch 0 to 16 row 0 rows 0 cols 32 ctx 1 / 0
}
// CHECK: 'hbm_isa.gemv': ctx_div must be at least 1, got 0

// -----

hbm_isa.stream {
  "hbm_isa.readout"() <{ch_lo = 0 : i64, ch_hi = 1 : i64, n = 0 : i64, per_ctx = 1 : i64}> : () -> ()
}
// CHECK: 'hbm_isa.readout': per_ctx and ctx_div go together

// -----

// An offset belongs to a ctx= term: without one it is an error.
hbm_isa.stream {
  hbm_isa.read ch 0 to 16 row 0 rows 2 cols 8 off -4
}
// CHECK: 'hbm_isa.read': ctx_off -4 needs a ctx= term (per_ctx and ctx_div)

// -----

// One spelling per count: an offset of 0 is written by leaving `off` out.
hbm_isa.stream {
  hbm_isa.gemv ch 0 to 16 row 0 rows 0 cols 32 ctx 1 / 8 off 0
}
// CHECK: 'hbm_isa.gemv': ctx_off must not be 0 (a count without an offset leaves it out)

// -----

hbm_isa.stream {
  "hbm_isa.readout"() <{ch_lo = 0 : i64, ch_hi = 1 : i64, n = 0 : i64, per_ctx = 1 : i64, ctx_div = 4 : i64, ctx_off = 2147483647 : i64}> : () -> ()
}
// CHECK: 'hbm_isa.readout': ctx_off must be within -2147483646..2147483646, got 2147483647

// -----

hbm_isa.stream attributes {section = "two words"} {
}
// CHECK: 'hbm_isa.stream': section name 'two words' must be a letter or '_' followed by letters, digits, '_', '.' or '-'

// -----

hbm_isa.stream {
  %c = arith.constant 0 : i64
}
// CHECK: 'hbm_isa.stream': 'arith.constant' is not an hbm_isa instruction

// -----

hbm_isa.wr_gb ch 0 col 0
// CHECK: 'hbm_isa.wr_gb' expects parent op 'hbm_isa.stream'

// -----

hbm_isa.stream {
  "hbm_isa.wr_gb"() <{ch = 1 : i64}> : () -> ()
}
// CHECK: property 'col' expected in operation 'hbm_isa.wr_gb'
