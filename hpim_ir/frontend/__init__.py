"""The frontend: model configurations (zoo, Hugging Face config.json) into the `llm` dialect."""

from hpim_ir.frontend.builder import PHASES, build_module
from hpim_ir.frontend.config import ModelConfig, config_from_dict, load_config, zoo_names
from hpim_ir.frontend.stats import ModelStats, model_stats

__all__ = [
    "PHASES",
    "ModelConfig",
    "ModelStats",
    "build_module",
    "config_from_dict",
    "load_config",
    "model_stats",
    "zoo_names",
]
