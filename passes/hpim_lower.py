"""`hpim-lower`: the whole compiler, from the `llm` dialect to the two ISA streams."""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from hpim_ir.errors import HpimError
from hpim_ir.hardware import load_hardware
from hpim_ir.passes.convert_llm_to_pim import ConvertLlmToPimPass, get_policy
from hpim_ir.passes.convert_pim_to_isa import ConvertPimToIsaPass
from hpim_ir.passes.llm_annotate import LlmAnnotatePass
from hpim_ir.passes.pim_insert_pipeline import PimInsertPipelinePass
from hpim_ir.passes.pim_schedule import PimScheduleAnalysisPass
from hpim_ir.passes.pim_tile_hbm import FILL_BANKS, PimTileHbmPass
from hpim_ir.passes.pim_tile_sram import PimTileSramPass


@dataclass(frozen=True)
class HpimLowerPass(ModulePass):
    """Lower an imported model to `hbm_isa` + `sram_isa` for a machine:
    `llm-annotate`, `convert-llm-to-pim`, `pim-tile-hbm`, `pim-tile-sram`, `pim-schedule`,
    `pim-insert-pipeline`, `convert-pim-to-isa`.

    Options:
    - `hw` (default `hpim`): hardware preset or TOML file.
    - `policy` (default `hpim`): a partitioning policy (`convert-llm-to-pim`).
    - `pipeline` (default true): the fine-grained pipeline; false sends K and V whole (the
      subsystems still overlap where the policy allows it).
    - `granularity` (default `tile`): the pipeline's unit, `tile` or `head`.
    - `kv-cache` (default: the hardware's `kv_placement`, else the policy's): `sram` or `hbm`.
    - `max-context` (default: the model's maximum): longest context an SRAM-resident KV cache
      must hold.
    - `fill-banks` (default `all`): which Q/K/V GEMVs fill the banks (`pim-tile-hbm{fill}`:
      `all`, `gqa` or `none`).
    """

    name = "hpim-lower"

    hw: str = "hpim"
    policy: str = "hpim"
    pipeline: bool = True
    granularity: str = "tile"
    kv_cache: str | None = None
    max_context: int = 0
    fill_banks: str = FILL_BANKS[0]

    def stages(self, phase: str = "decode") -> list[ModulePass]:
        """The passes, in order, with their options (what `hpim compile --time-passes` times).
        A prefill skips `pim-schedule` and `pim-insert-pipeline`: its lowering synchronizes
        the streamed weight tiles itself."""
        hw = load_hardware(self.hw)
        get_policy(self.policy)
        kv = self.kv_cache or (hw.sram.kv_cache.value if hw.sram is not None else None)
        granularity = self.granularity if self.pipeline else "none"
        schedule = [PimScheduleAnalysisPass(), PimInsertPipelinePass(granularity=granularity)]
        return [
            LlmAnnotatePass(),
            ConvertLlmToPimPass(policy=self.policy, kv_cache=kv),
            PimTileHbmPass(hw=self.hw, fill=self.fill_banks),
            PimTileSramPass(hw=self.hw, max_context=self.max_context),
            *(schedule if phase == "decode" else []),
            ConvertPimToIsaPass(hw=self.hw),
        ]

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.granularity not in ("tile", "head"):
            raise HpimError(f"hpim-lower: granularity must be 'tile' or 'head', got {self.granularity!r}")
        for stage in self.stages(phase_of(op)):
            stage.apply(ctx, op)


def phase_of(module: ModuleOp) -> str:
    """`prefill` for a module whose function is `@prefill`, else `decode`."""
    names = {f.sym_name.data for f in module.ops if isinstance(f, func.FuncOp)}
    return "prefill" if "prefill" in names else "decode"
