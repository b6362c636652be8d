"""Energy of an SRAM-PIM run: a small per-instruction model.

The paper gives no energy figures, so every figure here is an ASSUMPTION taken from a
published measurement or survey (docs/scheduler.md has the table and the reasoning). The
model charges each instruction for the work its sizes imply, per class:

- `pim`: PIM-macro multiply-accumulates (`mvm`, `stream_mvm`: R x C MACs), and writing the
  macros (`macro_write`, the chunks of a `stream_mvm`: the padded bytes written);
- `tcu`: TCU multiply-accumulates (`gemm`: M x N x K);
- `vcu`: one FP16 operation per element per pass of the function (`timing.VCU_PASSES`);
- `scalar`: one per SCU operation;
- `memory`: activation-memory bytes read and written by the instructions above and by
  `transpose`, `load`, `store` (2 bytes per FP16 value);
- `link`: bytes over the link (`load`, `store`, the matrix of a `stream_mvm`) on the SRAM-PIM
  die, from the HBM PHYs to the cores (the HBM side of the transfer is charged by the HBM-PIM
  engine: `rd_out`, `wr_gb`);
- `noc`: NoC link-cycles reserved (each carries `link_bytes_per_cycle` bytes over one hop);
- `static`: leakage and clock of every core for the whole run.
"""

from dataclasses import dataclass

import numpy as np

from hpim_ir.sim.sram.bind import BoundProgram
from hpim_ir.sim.sram.program import SramOp, VcuFn
from hpim_ir.sim.sram.timing import VCU_PASSES, pim_bytes


@dataclass(frozen=True)
class SramEnergy:
    """Energy per event in pJ (static power in mW per core). Sources in docs/scheduler.md."""

    pim_mac_pj: float = 0.068
    """One FP16 MAC in a digital SRAM-CIM macro, weight access included: 2 FLOPs at
    29.2 TFLOPS/W (Tu et al., ISSCC 2022, 28 nm BF16 digital CIM)."""
    tcu_mac_pj: float = 1.5
    """One FP16 MAC in a systolic PE: multiply 1.1 pJ + add 0.4 pJ (Horowitz, ISSCC 2014,
    45 nm), operands from the PE's registers."""
    vcu_op_pj: float = 1.5
    """One FP16 operation of the VCU per element and pass (an FMA, as `tcu_mac_pj`)."""
    scalar_op_pj: float = 0.5
    """One SCU operation: a 32-bit integer add is 0.1 pJ (Horowitz), plus its register-file
    and decode overhead."""
    memory_pj_per_byte: float = 1.25
    """Activation-memory (or macro) access: 10 pJ per 64-bit read of an 8 KB SRAM bank
    (Horowitz), the activation memory being banked."""
    link_pj_per_byte: float = 4.0
    """The SRAM-PIM die's share of a link transfer: about 5 mm of on-die wire at about
    0.1 pJ per bit and mm (Borkar and Chien, CACM 2011, fig. 11, 45 nm)."""
    noc_pj_per_byte_hop: float = 1.0
    """One byte over one NoC hop: about 1 mm of wire (0.8 pJ) and a router traversal."""
    static_mw_per_core: float = 20.0
    """Leakage and clock tree of a core: about 0.9 MB of SRAM and a 64 x 64 array."""


def energy_report(bound: BoundProgram, noc_link_cycles: int, ns: float, hw,
                  energy: SramEnergy | None = None) -> dict[str, float]:
    """Energy in pJ per class (see the module docstring) and `total`, for a run of `bound`
    that reserved `noc_link_cycles` NoC link-cycles and lasted `ns`."""
    e = energy or SramEnergy()
    sram = hw.sram
    op, sizes = bound.op, bound.sizes
    s0, s1, s2 = sizes[:, 0], sizes[:, 1], sizes[:, 2]
    kind = bound.records["kind"].astype(np.int64)[bound.record]

    def where(*ops: SramOp) -> np.ndarray:
        return np.isin(op, ops)

    products = where(SramOp.MVM, SramOp.STREAM_MVM)
    streamed = where(SramOp.STREAM_MVM)
    written = where(SramOp.MACRO_WRITE) | streamed
    macro_bytes = np.where(written, pim_bytes(s0, s1, sram.pim), 0)
    pim = e.pim_mac_pj * float((s0 * s1)[products].sum()) + e.memory_pj_per_byte * float(
        macro_bytes.sum()
    )
    gemm = where(SramOp.GEMM)
    tcu = e.tcu_mac_pj * float((s0 * s1 * s2)[gemm].sum())
    vcu_ops = 0
    vcu = where(SramOp.VCU)
    for function, passes in VCU_PASSES.items():
        mine = vcu & (kind == int(function))
        per_element = sum(1 for _, whole in passes if whole)
        per_vector = len(passes) - per_element
        vcu_ops += int((s0[mine] * per_element + per_vector).sum())
    # Activation-memory traffic in FP16 values (2 bytes each) or bytes, per instruction.
    values = np.zeros(len(op), dtype=np.int64)
    values[products] = (s0 + s1)[products]  # the input vector in, the result out
    values[where(SramOp.MACRO_WRITE)] = (s0 * s1)[where(SramOp.MACRO_WRITE)]
    values[gemm] = (s0 * s2 + s2 * s1 + s0 * s1)[gemm]
    values[where(SramOp.TRANSPOSE)] = 2 * (s0 * s1)[where(SramOp.TRANSPOSE)]
    vcu_values = np.zeros(len(op), dtype=np.int64)
    for function in VcuFn:
        mine = vcu & (kind == int(function))
        vcu_values[mine] = 2 * s0[mine] * sum(1 for _, whole in VCU_PASSES[function] if whole)
    transfers = where(SramOp.LOAD, SramOp.STORE)
    memory_bytes = 2 * int((values + vcu_values).sum()) + int(s0[transfers].sum())
    link_bytes = int(s0[transfers].sum()) + int(macro_bytes[streamed].sum())
    report = {
        "pim": pim,
        "tcu": tcu,
        "vcu": e.vcu_op_pj * vcu_ops,
        "scalar": e.scalar_op_pj * float(s0[where(SramOp.SCALAR)].sum()),
        "memory": e.memory_pj_per_byte * memory_bytes,
        "link": e.link_pj_per_byte * link_bytes,
        "noc": e.noc_pj_per_byte_hop * noc_link_cycles * sram.noc.link_bytes_per_cycle,
        # 1 mW for 1 ns is 1 pJ
        "static": e.static_mw_per_core * sram.cores * ns,
    }
    report["total"] = sum(report.values())
    return report

