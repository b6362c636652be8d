"""Functional simulation: the values a model computes, with numpy.

`run_prefill` / `run_decode` interpret an `llm` module (`llm.py`, on xDSL's interpreter) with
weights from `hpim_ir.weights`; `kernels.py` holds the FP32 arithmetic of the ops.
`isa.py` (`IsaMachine`, `run_tokens`) executes the compiled ISA program instead, instruction
by instruction. What is computed in which precision is in docs/functional.md.
"""

from hpim_ir.sim.functional.llm import PRECISIONS, KVCache, LlmFunctions, run_decode, run_prefill

__all__ = ["PRECISIONS", "KVCache", "LlmFunctions", "run_decode", "run_prefill"]
