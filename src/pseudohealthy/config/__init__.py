"""Typed configuration loaded from YAML presets (``quick`` for CPU, ``paper`` for the paper's sizes)."""

from pseudohealthy.config.schema import Config
from pseudohealthy.config.loader import (
    available_presets,
    config_to_yaml,
    load_config,
    load_work_config,
    save_config,
    with_overrides,
)

__all__ = ["Config", "available_presets", "config_to_yaml", "load_config", "load_work_config", "save_config",
           "with_overrides"]
