"""Typed configuration loaded from YAML presets (``quick`` for CPU, ``paper`` for the paper's sizes)."""

from pseudohealthy.config.schema import Config
from pseudohealthy.config.loader import available_presets, load_config, load_work_config, save_config

__all__ = ["Config", "available_presets", "load_config", "load_work_config", "save_config"]
