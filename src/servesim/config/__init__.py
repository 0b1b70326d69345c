"""Configuration: models (HF config.json), hardware presets, vLLM engine arguments."""

from servesim.config.engine import EngineConfig, engine_config
from servesim.config.hardware import Hardware, load_hardware
from servesim.config.model import ModelSpec, load_model, spec_from_config

__all__ = ["EngineConfig", "Hardware", "ModelSpec", "engine_config", "load_hardware", "load_model", "spec_from_config"]
