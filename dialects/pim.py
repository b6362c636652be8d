"""The `pim` dialect: the model's work partitioned between HPIM's two subsystems.

Every compute op is an `llm` op with a `place`: `#pim.sram` (the SRAM-PIM cores) or `#pim.hbm`
(the HBM-PIM bank units). The op set mirrors `llm` one to one (`pim.linear` is `llm.linear`
placed), so shapes are verified by the same code and a pass can map one to the other by name.
What `pim` adds (docs/dialects/pim.md has the rationale):

- `pim.transfer` moves a value between subsystems; the verifier rejects an op that reads a
  value living on the other subsystem, so every crossing is explicit.
- `pim.weight` / `pim.kv_cache` carry where the data lives: `place`, and after tiling a
  `placement` (for HBM: the channels and the DRAM rows of each bank; for SRAM: the cores).
- Tiling and the pipeline schedule are attributes on the ops (`tile`, `stage`, written by the
  tiling passes and `pim-schedule`); `pim.signal` / `pim.wait` are the synchronization that
  `pim-insert-pipeline` materializes from the schedule.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import (
    DictionaryAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    SymbolRefAttr,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Dialect, Operation, ParametrizedAttribute, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure, SymbolTable
from xdsl.utils.exceptions import VerifyException

from hpim_ir.dialects import llm


class PlaceAttr(ParametrizedAttribute):
    """Where an op runs or a value lives: one of the two subsystems."""

    SHORT: ClassVar[str]


@irdl_attr_definition
class SramAttr(PlaceAttr):
    """`#pim.sram`: the SRAM-PIM subsystem (cores, TCU, VCU, PIM macros)."""

    name = "pim.sram"
    SHORT: ClassVar[str] = "sram"


@irdl_attr_definition
class HbmAttr(PlaceAttr):
    """`#pim.hbm`: the HBM-PIM subsystem (bank-level processing units)."""

    name = "pim.hbm"
    SHORT: ClassVar[str] = "hbm"


SRAM = SramAttr()
HBM = HbmAttr()
PLACES: dict[str, PlaceAttr] = {"sram": SRAM, "hbm": HBM}


def place_of_value(value: SSAValue) -> PlaceAttr | None:
    """The subsystem a value lives on: its producer's place (a transfer's destination); for a
    block argument of `pim.layers`, the loop's place; None for function arguments."""
    owner = value.owner
    if isinstance(owner, TransferOp):
        return owner.destination
    if isinstance(owner, Operation):
        place = owner.properties.get("place")
        return place if isinstance(place, PlaceAttr) else None
    parent = owner.parent_op()
    if isinstance(parent, LayersOp):
        return parent.place
    return None


def weight_source(linear: LinearOp) -> GetWeightOp:
    """The weight read a linear multiplies by (through the transfer bringing it to the
    subsystem the linear runs on)."""
    value = linear.weight
    while isinstance(value.owner, TransferOp):
        value = value.owner.input
    assert isinstance(value.owner, GetWeightOp)
    return value.owner


def _check_operand_places(op: Operation, place: PlaceAttr) -> None:
    for index, operand in enumerate(op.operands):
        if not isinstance(operand.type, TensorType):
            continue
        where = place_of_value(operand)
        if where is not None and where != place:
            raise VerifyException(
                f"'{op.name}' on #{place.name} reads operand {index} from #{where.name}; "
                "insert a pim.transfer"
            )


def _check_symbol_place(op: Operation, ref: SymbolRefAttr, place: PlaceAttr, what: str) -> None:
    decl = SymbolTable.lookup_symbol(op, ref)
    if decl is None:
        raise VerifyException(f"'{op.name}': {what} @{ref.string_value()} is not defined")
    decl_place = decl.properties.get("place")
    if decl_place is not None and decl_place != place:
        raise VerifyException(
            f"'{op.name}' on #{place.name} uses @{ref.string_value()}, which is placed on "
            f"#{decl_place.name}"
        )


def _placed(base: type[IRDLOperation]) -> type[IRDLOperation]:
    """The `pim` twin of an `llm` op: same operands, types and verifier, plus `place` (and the
    optional `tile` and `stage` the scheduling passes record)."""

    def verify_(self: IRDLOperation) -> None:
        base.verify_(self)
        _check_operand_places(self, self.place)
        for field in ("weight", "cache"):
            ref = self.properties.get(field)
            if isinstance(ref, SymbolRefAttr):
                _check_symbol_place(self, ref, self.place, field)

    short = base.name.split(".", 1)[1]
    cls = type(
        base.__name__.removesuffix("Base") + "Op",
        (base,),
        {
            "__module__": __name__,
            "__doc__": f"`{base.name}` placed on a subsystem.\n\n{base.__doc__}",
            "name": f"pim.{short}",
            "place": prop_def(PlaceAttr),
            "tile": opt_prop_def(DictionaryAttr),
            "stage": opt_prop_def(IntegerAttr[IntegerType]),
            "irdl_options": (ParsePropInAttrDict(),),
            "verify_": verify_,
        },
    )
    return irdl_op_definition(cls)


# The placed twins of the llm compute ops.
GetWeightOp = _placed(llm.GetWeightBase)
EmbeddingOp = _placed(llm.EmbeddingBase)
PositionEmbeddingOp = _placed(llm.PositionEmbeddingBase)
LayerNormOp = _placed(llm.LayerNormBase)
RMSNormOp = _placed(llm.RMSNormBase)
LinearOp = _placed(llm.LinearBase)
RoPEOp = _placed(llm.RoPEBase)
KVAppendOp = _placed(llm.KVAppendBase)
AttentionScoresOp = _placed(llm.AttentionScoresBase)
AttentionValuesOp = _placed(llm.AttentionValuesBase)
SoftmaxOp = _placed(llm.SoftmaxBase)
ReluOp = _placed(llm.ReluBase)
GeluOp = _placed(llm.GeluBase)
SiluOp = _placed(llm.SiluBase)
AddOp = _placed(llm.AddBase)
MulOp = _placed(llm.MulBase)

TWINS: dict[type[Operation], type[Operation]] = {
    getattr(llm, op.__name__): op
    for op in (
        GetWeightOp,
        EmbeddingOp,
        PositionEmbeddingOp,
        LayerNormOp,
        RMSNormOp,
        LinearOp,
        RoPEOp,
        KVAppendOp,
        AttentionScoresOp,
        AttentionValuesOp,
        SoftmaxOp,
        ReluOp,
        GeluOp,
        SiluOp,
        AddOp,
        MulOp,
    )
}
"""Each `llm` compute op and its placed `pim` twin."""


class _PlacedSymbol:
    """Checks shared by weights and caches: a `placement` must match the `place`."""

    def _verify_placement(self: IRDLOperation) -> None:  # type: ignore[misc]
        placement = self.placement
        if placement is None:
            return
        on = placement.data.get("on")
        if not isinstance(on, StringAttr):
            raise VerifyException(
                f"'{self.name}' @{self.sym_name.data}: placement has no 'on' entry naming "
                "its subsystem"
            )
        if on.data != self.place.SHORT:
            raise VerifyException(
                f"'{self.name}' @{self.sym_name.data}: placement is for {on.data!r} but the "
                f"symbol is on #{self.place.name}"
            )


@irdl_op_definition
class WeightOp(llm.WeightBase, _PlacedSymbol):
    """A model parameter with the subsystem that holds it (`place`) and, once tiled, where in
    it (`placement`: for HBM `{on = "hbm", channels, row_base, rows_per_layer, ...}`).
    `gemv_layout`: a matrix laid out for the HBM-PIM GEMV a decode step runs on it, though
    this module's linear streams it to SRAM-PIM (a prefill): one layout serves both phases."""

    name = "pim.weight"

    place = prop_def(PlaceAttr)
    placement = opt_prop_def(DictionaryAttr)
    gemv_layout = opt_prop_def(UnitAttr)

    def verify_(self) -> None:
        llm.WeightBase.verify_(self)
        self._verify_placement()


@irdl_op_definition
class KVCacheOp(llm.KVCacheBase, _PlacedSymbol):
    """The key or value cache with the subsystem that holds it: `#pim.sram` (resident in the
    cores) or `#pim.hbm` (stored in HBM and streamed to the cores per token)."""

    name = "pim.kv_cache"

    place = prop_def(PlaceAttr)
    placement = opt_prop_def(DictionaryAttr)

    def verify_(self) -> None:
        llm.KVCacheBase.verify_(self)
        self._verify_placement()


@irdl_op_definition
class TransferOp(IRDLOperation):
    """Move a value from one subsystem to the other over the link between them."""

    name = "pim.transfer"

    input = operand_def(TensorType)
    source = prop_def(PlaceAttr)
    destination = prop_def(PlaceAttr)
    result = result_def(TensorType)
    stage = opt_prop_def(IntegerAttr[IntegerType])
    tiles = opt_prop_def(IntegerAttr[IntegerType])

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = (
        "$input `from` $source `to` $destination attr-dict `:` type($input) `->` type($result)"
    )

    def __init__(self, value: SSAValue, source: PlaceAttr, destination: PlaceAttr):
        super().__init__(
            operands=[value],
            properties={"source": source, "destination": destination},
            result_types=[value.type],
        )

    def verify_(self) -> None:
        if self.source == self.destination:
            raise VerifyException(f"'{self.name}' from #{self.source.name} to itself")
        if self.input.type != self.result.type:
            raise VerifyException(
                f"'{self.name}': result type {self.result.type} differs from input type "
                f"{self.input.type}"
            )
        where = place_of_value(self.input)
        if where is not None and where != self.source:
            raise VerifyException(
                f"'{self.name}' from #{self.source.name}, but its input lives on #{where.name}"
            )


@irdl_op_definition
class LayersOp(llm.LayersBase):
    """`llm.layers` with the subsystem that holds the hidden state between layers."""

    name = "pim.layers"

    place = prop_def(PlaceAttr)

    def verify_(self) -> None:
        llm.LayersBase.verify_(self)
        _check_operand_places(self, self.place)
        _check_operand_places(self.body.block.last_op, self.place)


# pim.yield is llm.yield under another name and parent.
YieldOp = irdl_op_definition(
    type(
        "YieldOp",
        (llm.YieldBase,),
        {
            "__module__": __name__,
            "__doc__": "Ends the body of `pim.layers` with the next hidden state.",
            "name": "pim.yield",
        },
    )
)


class _SyncOp(IRDLOperation):
    """`tiles` > 1: the producer raises the token once per tile of the value it sends and the
    consumer waits for each tile in turn (the fine-grained pipeline)."""

    token = prop_def(IntegerAttr[IntegerType])
    place = prop_def(PlaceAttr)
    tiles = opt_prop_def(IntegerAttr[IntegerType])

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$token `on` $place attr-dict"

    def __init__(self, token: int, place: PlaceAttr, tiles: int = 1):
        super().__init__(
            properties={
                "token": IntegerAttr(token, 64),
                "place": place,
                "tiles": IntegerAttr(tiles, 64),
            }
        )

    def verify_(self) -> None:
        if self.token.value.data < 0:
            raise VerifyException(f"'{self.name}': token must be non-negative")
        if self.tiles is not None and self.tiles.value.data < 1:
            raise VerifyException(f"'{self.name}': tiles must be at least 1")


@irdl_op_definition
class SignalOp(_SyncOp):
    """Raise `token` once every earlier op of this subsystem has completed."""

    name = "pim.signal"


@irdl_op_definition
class WaitOp(_SyncOp):
    """Later ops of this subsystem wait until the other subsystem raises `token`."""

    name = "pim.wait"


def is_placed(op: Operation) -> bool:
    return isinstance(op.properties.get("place"), PlaceAttr)


PIM = Dialect(
    "pim",
    [
        WeightOp,
        KVCacheOp,
        *TWINS.values(),
        TransferOp,
        LayersOp,
        YieldOp,
        SignalOp,
        WaitOp,
    ],
    [SramAttr, HbmAttr],
)
