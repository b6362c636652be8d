"""Small models compiled for every policy and cache placement are programs the timing
simulator accepts at every context, the first ones included.

At a short context a core's part of a value can be smaller than what it contributes to an
all-gather: 2 heads split over 4 cores hold one score each at context 0 (2 bytes), a
64-wide hidden state on the `hpim` preset's 32 cores 2 elements each (4 bytes), while the
softmax and norm statistics are 8 bytes a core. The simulator rejects an all-gather that
moves more than its source buffer holds, so these programs failed at contexts 0 to 5.
"""

from __future__ import annotations

import pytest
from xdsl.context import Context

from hpim_ir.errors import HpimError
from hpim_ir.frontend import build_module, config_from_dict
from hpim_ir.hardware import load_hardware
from hpim_ir.passes.convert_llm_to_pim import POLICIES
from hpim_ir.passes.hpim_lower import HpimLowerPass
from hpim_ir.sim.program import MachineProgram
from hpim_ir.sim.scheduler import simulate_machine
from tests.test_functional_isa import CONFIGS, TINY_MACHINE, machine_file

CONTEXTS = range(8)


@pytest.fixture(scope="module")
def tiny_machine(tmp_path_factory: pytest.TempPathFactory) -> str:
    return machine_file(tmp_path_factory, "tiny", TINY_MACHINE)


@pytest.mark.parametrize("kv", ["sram", "hbm"])
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("hw", ["tiny", "hpim"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_context_simulates(
    tiny_machine: str, name: str, hw: str, policy: str, kv: str
) -> None:
    machine = tiny_machine if hw == "tiny" else hw
    config = config_from_dict(CONFIGS[name], name, name)
    module = build_module(config, "decode", prompt=1)
    try:
        HpimLowerPass(hw=machine, policy=policy, kv_cache=kv).apply(Context(), module)
    except HpimError as error:
        # Attention in HBM-PIM beside a cache in SRAM-PIM is rejected up front.
        assert "contradicts it" in str(error)
        return
    program, hardware = MachineProgram.from_module(module), load_hardware(machine)
    for ctx in CONTEXTS:
        assert simulate_machine(program, hardware, ctx=ctx).ns > 0
