"""hpim: a compiler and cycle-accurate simulator for the HPIM PIM accelerator.

The import root of the distribution: `hpim_ir.dialects`, `hpim_ir.passes` and `hpim_ir.sim`
are the top-level source folders mapped here by `pyproject.toml`. The Python API starts with
`import_model`; everything else is reached through the submodules.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp


def import_model(
    name_or_path: str, phase: str = "decode", prompt: int = 256
) -> "ModuleOp":
    """Import a model into the `llm` dialect.

    `name_or_path` is a zoo name (`opt-125m`, `llama-2-7b`, ...), a Hugging Face
    `config.json`, or a folder holding one. `phase` is `decode` (one step, the context length
    symbolic) or `prefill` (a prompt of `prompt` tokens). Raises `HpimError` on bad input.
    """
    from hpim_ir.frontend import build_module, load_config

    return build_module(load_config(name_or_path), phase=phase, prompt=prompt)


__all__ = ["__version__", "import_model"]
