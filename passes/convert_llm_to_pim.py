"""`convert-llm-to-pim`: partition a model between SRAM-PIM and HBM-PIM by a policy.

Policies are how different accelerator designs are expressed in one framework. They live in
`POLICIES`, which users extend from Python (`register_policy`), so a new mapping needs no
change to the pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, TensorType, UnitAttr
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from hpim_ir.dialects import llm, pim
from hpim_ir.errors import HpimError
from hpim_ir.passes.llm_annotate import kind_of, step_tokens


@dataclass(frozen=True)
class Policy:
    """A partitioning policy: where each op runs and where the KV cache lives.

    `place` gets an `llm` compute op, its kind (`llm-annotate`) and the step's token count,
    and returns the subsystem. `overlap` says whether the two subsystems may work at the same
    time (a strictly serial design sets it false; `pim-schedule` honours it). Subclass and
    override `place` for a new mapping, then `register_policy` it.
    """

    name: str
    description: str
    overlap: bool = True
    kv_cache: str = "sram"  # "sram": resident in SRAM-PIM; "hbm": stored in HBM, streamed

    def place(self, op: Operation, kind: str, tokens: int) -> pim.PlaceAttr:
        """HPIM's mapping (paper §compiler step 2): prefill entirely on SRAM-PIM (TCU GEMMs);
        in decode the weight GEMVs on HBM-PIM, attention and nonlinear ops on SRAM-PIM."""
        if tokens == 1 and kind == "gemv" and isinstance(op, llm.LinearOp):
            return pim.HBM
        return pim.SRAM


@dataclass(frozen=True)
class HbmOnlyPolicy(Policy):
    """Everything the HBM-PIM can do goes there: every GEMV and GEMM, the attention products
    included (AttAcc-style attention in HBM, with the KV cache in HBM); only nonlinear ops
    stay on SRAM-PIM."""

    def place(self, op: Operation, kind: str, tokens: int) -> pim.PlaceAttr:
        return pim.HBM if kind in ("gemv", "gemm") else pim.SRAM


@dataclass(frozen=True)
class AttAccPolicy(Policy):
    """AttAcc (ASPLOS'24) at batch 1: a GPU runs the FC layers with their weights streamed
    from its memory, the attention products (q.K^T, s.V) run in the HBM-PIM banks beside
    the KV cache (kept in HBM), as `hbm-only` does. Every linear (decode GEMV or prefill GEMM)
    and every nonlinear op is on SRAM-PIM, i.e. the GPU (`[sram]`), its weight read from HBM
    over the link (`lower_streamed_linear`)."""

    def place(self, op: Operation, kind: str, tokens: int) -> pim.PlaceAttr:
        attention = isinstance(op, (llm.AttentionScoresBase, llm.AttentionValuesBase))
        return pim.HBM if attention and tokens == 1 else pim.SRAM


@dataclass(frozen=True)
class NearMemoryPolicy(Policy):
    """A near-memory processor (CXL-PNM, HPCA'24): one engine beside the memory controller
    computes everything. Every op runs on SRAM-PIM (the engine, `[sram]`); the weights and
    the KV cache stay in the memory (`[hbm]`, whose bank PUs are not used) and stream to the
    engine over `[link]` (the memory's bandwidth) every token."""

    def place(self, op: Operation, kind: str, tokens: int) -> pim.PlaceAttr:
        return pim.SRAM


POLICIES: dict[str, Policy] = {}


def register_policy(policy: Policy) -> Policy:
    """Make a policy available to `convert-llm-to-pim{policy=NAME}` and `hpim-lower`."""
    if policy.name in POLICIES:
        raise HpimError(f"a policy named {policy.name!r} is already registered")
    POLICIES[policy.name] = policy
    return policy


register_policy(Policy("hpim", "the paper's mapping by phase, subsystems overlapped"))
register_policy(
    Policy(
        "serial",
        "the hpim placement with no overlap between the subsystems (IANUS-style)",
        overlap=False,
    )
)
register_policy(
    HbmOnlyPolicy("hbm-only", "all GEMV/GEMM work on HBM-PIM (AttAcc-style)", kv_cache="hbm")
)
register_policy(
    AttAccPolicy(
        "attacc", "FC layers on the compute side with streamed weights, attention in HBM-PIM "
        "beside the KV cache (AttAcc-style)", kv_cache="hbm",
    )
)
register_policy(
    NearMemoryPolicy(
        "pnm", "everything on the compute side, weights and KV cache streamed from memory "
        "(CXL-PNM-style)", kv_cache="hbm",
    )
)


def get_policy(name: str) -> Policy:
    if name not in POLICIES:
        raise HpimError(f"unknown policy {name!r}; registered: {', '.join(POLICIES)}")
    return POLICIES[name]


def _weight_places(module: ModuleOp, op_places: dict[Operation, pim.PlaceAttr]) -> dict[str, pim.PlaceAttr]:
    """Matrices (and embedding tables) live in HBM; per-feature vectors (norm parameters,
    biases) live with the op that uses them."""
    places: dict[str, pim.PlaceAttr] = {}
    for op in module.walk():
        if not isinstance(op, llm.GetWeightOp):
            continue
        sym = op.weight.string_value()
        if len(op.result.type.get_shape()) >= 2:
            places[sym] = pim.HBM
            continue
        users = {op_places[use.operation] for use in op.result.uses if use.operation in op_places}
        places.setdefault(sym, users.pop() if len(users) == 1 else pim.HBM)
    return places


class _Partitioner:
    """Rewrites `llm` ops into their placed `pim` twins and inserts the transfers."""

    def __init__(self, module: ModuleOp, policy: Policy, kv_cache: pim.PlaceAttr):
        self.module = module
        self.policy = policy
        self.kv_cache = kv_cache
        tokens = step_tokens(module)
        self.op_places: dict[Operation, pim.PlaceAttr] = {}
        for op in module.walk():
            kind = kind_of(op, tokens)
            if kind == "memory":
                continue  # placed where the data lives, below
            if kind is not None:
                self.op_places[op] = policy.place(op, kind, tokens)
        attention = (llm.AttentionScoresBase, llm.AttentionValuesBase)
        if kv_cache == pim.SRAM and any(
            isinstance(op, attention) and place == pim.HBM for op, place in self.op_places.items()
        ):
            # The products read the cache where they run; streaming a cache resident in the
            # cores to the banks every step would defeat computing attention in HBM-PIM.
            raise HpimError(
                f"policy {policy.name!r} computes attention (q.K^T, s.V) in HBM-PIM beside the "
                "KV cache, which needs kv-cache=hbm; kv-cache=sram contradicts it (use "
                "kv-cache=hbm, or a policy that computes attention on SRAM-PIM)"
            )
        self.weight_places = _weight_places(module, self.op_places)
        # Matrices a decode step reads in HBM-PIM GEMVs keep that layout in every phase,
        # also where this one streams them to SRAM-PIM (a prefill's GEMMs).
        self.gemv_layout = {
            op.weight.owner.weight.string_value()
            for op, place in self.op_places.items()
            if isinstance(op, llm.LinearOp) and place != pim.HBM
            and isinstance(op.weight.owner, llm.GetWeightOp)
            and policy.place(op, "gemv", 1) == pim.HBM
        }

    def place_of(self, op: Operation) -> pim.PlaceAttr:
        # Memory work happens where the data lives: a weight read or an embedding lookup in
        # the weight's subsystem, a cache append in the cache's.
        if isinstance(op, llm.GetWeightOp):
            return self.weight_places[op.weight.string_value()]
        if isinstance(op, (llm.EmbeddingOp, llm.PositionEmbeddingOp)):
            return pim.place_of_value(op.table)
        if isinstance(op, llm.KVAppendOp):
            return self.kv_cache
        if isinstance(op, (llm.LayersOp, llm.YieldOp, func.ReturnOp)):
            return pim.SRAM  # the hidden state and the logits end on the SRAM side
        return self.op_places[op]

    def operands_on(self, op: Operation, place: pim.PlaceAttr, cache: dict) -> list[SSAValue]:
        """`op`'s operands as seen from `place`: a transfer (one per value and block) for each
        tensor living on the other subsystem."""
        operands = []
        for value in op.operands:
            where = pim.place_of_value(value)
            if isinstance(value.type, TensorType) and where is not None and where != place:
                key = (value, place)
                if key not in cache:
                    transfer = pim.TransferOp(value, where, place)
                    Rewriter.insert_op(transfer, InsertPoint.before(op))
                    cache[key] = transfer.result
                value = cache[key]
            operands.append(value)
        return operands

    def rewrite_block(self, block: Block) -> None:
        transfers: dict = {}
        for op in list(block.ops):
            if isinstance(op, (llm.WeightOp, llm.KVCacheOp)):
                self.rewrite_symbol(op)
                continue
            if op.dialect_name() != "llm" and not isinstance(op, func.ReturnOp):
                for region in op.regions:
                    for inner in region.blocks:
                        self.rewrite_block(inner)
                continue
            place = self.place_of(op)
            operands = self.operands_on(op, place, transfers)
            if isinstance(op, func.ReturnOp):
                op.operands = operands
                continue
            new = self.twin(op, place, operands)
            Rewriter.replace_op(op, new)
            for region in new.regions:
                for inner in region.blocks:
                    self.rewrite_block(inner)

    def twin(self, op: Operation, place: pim.PlaceAttr, operands: list[SSAValue]) -> Operation:
        properties = {**op.properties, "place": place}
        if isinstance(op, llm.LayersOp):
            twin_class = pim.LayersOp
        elif isinstance(op, llm.YieldOp):
            twin_class = pim.YieldOp
            properties = {}
        else:
            twin_class = pim.TWINS[type(op)]
        return twin_class.create(
            operands=operands,
            result_types=[r.type for r in op.results],
            properties=properties,
            attributes=dict(op.attributes),
            regions=[op.detach_region(r) for r in list(op.regions)],
        )

    def rewrite_symbol(self, op: llm.WeightOp | llm.KVCacheOp) -> None:
        if isinstance(op, llm.WeightOp):
            place = self.weight_places.get(op.sym_name.data, pim.HBM)
            properties = {**op.properties, "place": place}
            if op.sym_name.data in self.gemv_layout:
                properties["gemv_layout"] = UnitAttr()
            new = pim.WeightOp.create(properties=properties)
        else:
            new = pim.KVCacheOp.create(properties={**op.properties, "place": self.kv_cache})
        Rewriter.replace_op(op, new)


@dataclass(frozen=True)
class ConvertLlmToPimPass(ModulePass):
    """Partition an `llm` module between the subsystems: every compute op becomes its `pim`
    twin with a `place`, every weight and KV cache gets the subsystem that holds it, and a
    `pim.transfer` is inserted wherever a value crosses subsystems.

    Options:
    - `policy` (default `hpim`): a name in `POLICIES`. Built in: `hpim` (the paper's mapping:
      prefill on SRAM-PIM; decode GEMVs on HBM-PIM, attention and nonlinear ops on SRAM-PIM),
      `serial` (the same placement, no overlap between subsystems, IANUS-style: the
      `ianus-like` preset's default, docs/designs.md), `hbm-only`
      (all GEMV/GEMM work on HBM-PIM, attention included, AttAcc-style), `attacc` (every
      linear on SRAM-PIM with its weight streamed from HBM, decode attention in HBM-PIM:
      the `attacc-like` preset's default), `pnm` (every op on SRAM-PIM, weights and KV
      cache streamed: the `cxl-pnm-like` preset's default).
    - `kv-cache` (default: the policy's): `sram` (resident in SRAM-PIM) or `hbm` (stored in HBM
      and streamed to the cores each token). A policy that computes attention in HBM-PIM
      (`hbm-only`) needs `hbm`: `sram` is an error naming both.

    Weight matrices and embedding tables always live in HBM; a GEMM on SRAM-PIM (prefill)
    therefore reads them through a transfer, and a matrix the policy multiplies in HBM-PIM
    as a decode GEMV is marked `gemv_layout` (`pim-tile-hbm` lays it out for that GEMV in
    both phases). Per-feature parameters (norms, biases) live with
    their op. Memory work runs where the data lives: embedding lookups in HBM (one row per
    token crosses the link, not the table), `llm.kv_append` where the cache is. The hidden state between layers and
    the returned logits are on SRAM-PIM. Records `pim.policy` and `pim.overlap` on the module
    for the scheduling passes. Runs `llm-annotate`'s classification itself.
    """

    name = "convert-llm-to-pim"

    policy: str = "hpim"
    kv_cache: str | None = None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        policy = get_policy(self.policy)
        kv = self.kv_cache or policy.kv_cache
        if kv not in pim.PLACES:
            raise HpimError(f"kv-cache must be 'sram' or 'hbm', got {kv!r}")
        _Partitioner(op, policy, pim.PLACES[kv]).rewrite_block(op.body.block)
        op.attributes["pim.policy"] = StringAttr(policy.name)
        op.attributes["pim.overlap"] = IntegerAttr(int(policy.overlap), 1)
