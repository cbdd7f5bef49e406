"""Evaluate a trained WORK_DIR on its test subjects under given settings: calibrate on the validation
subjects with those settings (never on the test set), then measure the test subjects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pseudohealthy.config import Config, load_config
from pseudohealthy.detect.pipeline import SubjectMaps, load_models
from pseudohealthy.detect.run import analyse_role, calibration_from
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.summary import summarise
from pseudohealthy.templates.grid import template_grid


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["diffusion.guidance_scale=0", "method.slice_standardise=false"]`` -> nested overrides."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. diffusion.guidance_scale=0")
        node = overrides
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return overrides


def calibrate_and_test(work_dir: Path, cfg: Config, device: str = "cpu",
                       on_subject: Callable[[str], None] | None = None,
                       model_root: Path | None = None) -> tuple[dict, dict[str, SubjectMaps]]:
    """Threshold chosen on the validation subjects with ``cfg``, then the test subjects' maps; the
    networks come from ``model_root`` (an unpacked model archive) or else from ``work_dir``."""
    models = load_models(model_root or work_dir, cfg)
    calibration = calibration_from(analyse_role(work_dir, "val", models, cfg, device, on_subject), cfg)
    test = analyse_role(work_dir, "test", models, cfg, device, on_subject)
    if not test:
        raise UserError(f"{work_dir}: no test subjects in splits.tsv")
    return calibration, test


def evaluate(work_dir: Path, overrides: dict[str, Any] | None = None, device: str = "cpu",
             on_subject: Callable[[str], None] | None = None, model_root: Path | None = None) -> dict:
    """Figures on WORK_DIR's test subjects; ``model_root``: networks and config from there (an unpacked
    archive, which must use WORK_DIR's data settings) instead of WORK_DIR's own."""
    work_dir = Path(work_dir)
    if not (work_dir / "config.yaml").is_file():
        raise UserError(f"{work_dir}: no config.yaml; run `pseudohealthy prepare` and `train` first")
    cfg = load_config(Path(model_root or work_dir) / "config.yaml", overrides=overrides)
    if model_root is not None and load_config(work_dir / "config.yaml").data != cfg.data:
        raise UserError(f"{work_dir} was prepared with other data settings than the model's; prepare the data "
                        f"with the model's preset ({cfg.name})")
    calibration, test = calibrate_and_test(work_dir, cfg, device, on_subject, model_root)
    _, affine = template_grid(cfg.data.template_voxel_mm, cfg.data.image_size)
    return {"overrides": overrides or {}, "calibration": calibration,
            **summarise(test, affine, calibration, cfg)}
