"""Evaluate a trained WORK_DIR on its test subjects under given settings: choose the threshold on the
validation subjects with those settings (never on the test set), run ``detect``'s own per-subject code on
the test subjects and score the native-space derivatives it writes (``evaluation.native_scores``), with the
template-grid figures of the same maps beside them (``evaluation.template_scores``). ``evaluate``, ``benchmark``
and ``make demo`` all score through here or through ``evaluation.native_scores``: one scoring path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import yaml

from pseudohealthy import workdir
from pseudohealthy.anomaly.clusters import ClusterSettings
from pseudohealthy.config import Config, load_config
from pseudohealthy.config.loader import deep_update
from pseudohealthy.data.preprocess import prepared_inputs
from pseudohealthy.data.splits import roles
from pseudohealthy.detect.calibration import analyse_role, calibration_from
from pseudohealthy.detect.detector import Detector
from pseudohealthy.detect.pipeline import SubjectMaps
from pseudohealthy.detect.run import detect_subject
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.native_scores import OutputScore, score_unit, summarise_outputs
from pseudohealthy.evaluation.template_scores import SubjectScore, score_subject, summarise_method
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


def truth_class(work_dir: Path, unit: str) -> int:
    """The unit's lesion class (lobe code) from its prepared meta.json; 0 for controls."""
    meta = json.loads(workdir.meta_file(workdir.subject_dir(work_dir, unit)).read_text())
    return int(meta.get("label") or 0) if meta.get("group") == "fcd" else 0


def lobe_map(work_dir: Path, unit: str) -> np.ndarray | None:
    path = workdir.volume_file(workdir.subject_dir(work_dir, unit), "lobe")
    return np.asanyarray(nib.load(path).dataobj) if path.is_file() else None


def template_score(work_dir: Path, unit: str, maps: SubjectMaps, clusters: ClusterSettings,
                   cfg: Config) -> SubjectScore:
    """The template-grid figures of one unit's maps (AUPRC pooling, R@k, Dice, lobe) under the calibration's
    cluster settings (``Detector.clusters``), the ones ``detect`` wrote its clusters with."""
    _, affine = template_grid(cfg.data.template_voxel_mm, cfg.data.image_size)
    return score_subject(unit, maps, clusters, cfg, affine, lobe_map(work_dir, unit), truth_class(work_dir, unit))


def score_test_units(work_dir: Path, detector: Detector, out_dir: Path, device: str = "cpu",
                     on_subject: Callable[[str], None] | None = None, keep: str | None = None
                     ) -> tuple[list[OutputScore], list[SubjectScore], SubjectMaps | None]:
    """Every test unit of WORK_DIR through ``detect_subject`` with the calibrated ``detector`` (the code that
    writes a user's derivatives, here without figures) into ``out_dir``, scored from what it wrote; returns
    (native scores, template-grid scores of the same maps, the maps of unit ``keep``)."""
    work_dir = Path(work_dir)
    units = [unit for unit, role in roles(work_dir).items() if role == "test"]
    if not units:
        raise UserError(f"{work_dir}: no test subjects in splits.tsv")
    outputs, template, kept = [], [], None
    for unit in units:
        inputs = prepared_inputs(workdir.subject_dir(work_dir, unit))
        maps = detect_subject(inputs, out_dir, detector, device, work_root=workdir.subjects_dir(work_dir),
                              figures=False)["maps"]
        template.append(template_score(work_dir, unit, maps, detector.clusters, detector.cfg))
        outputs.append(score_unit(out_dir, unit, inputs.lesion_mask, inputs.flair))
        kept = maps if unit == keep else kept
        if on_subject:
            on_subject(unit)
    return outputs, template, kept


def require_same_preprocessing(work_dir: Path, model_root: Path) -> None:
    """Refuse a model (a work folder or unpacked archive) whose input was prepared otherwise than WORK_DIR's
    subjects; how the subjects were split into roles may differ."""
    model_cfg = load_config(workdir.config_file(model_root))
    if load_config(workdir.config_file(work_dir)).data.preprocessing() != model_cfg.data.preprocessing():
        raise UserError(f"{work_dir} was prepared with other data settings than the model's; prepare the data "
                        f"with the model's preset ({model_cfg.name})")


def evaluate(work_dir: Path, overrides: dict[str, Any] | None = None, device: str = "cpu",
             on_subject: Callable[[str], None] | None = None, model_root: Path | None = None,
             out_dir: Path | None = None, samples: int | None = None) -> dict:
    """Figures on WORK_DIR's test subjects, from the derivatives written to ``out_dir`` (default
    WORK_DIR/evaluate/derivatives); ``overrides`` (``--set``) and ``samples`` (``--samples``, N draws)
    apply to this run only; ``model_root``: networks and config from there (an unpacked archive, which
    must use WORK_DIR's data settings) instead of WORK_DIR's own; the threshold and the normative statistics
    come from WORK_DIR's subjects all the same (the model's own fit where WORK_DIR has too few controls)."""
    work_dir = Path(work_dir)
    if not workdir.config_file(work_dir).is_file():
        raise UserError(f"{work_dir}: no config.yaml; run `pseudohealthy prepare` and `train` first")
    root = Path(model_root or work_dir)
    cfg = Detector.settings(root, overrides, samples)
    if model_root is not None:
        require_same_preprocessing(work_dir, model_root)
    detector = Detector.for_config(root, cfg, device, data_dir=work_dir)  # the statistics of WORK_DIR's controls
    calibration = calibration_from(analyse_role(work_dir, "val", detector.models, cfg, device, on_subject), cfg)
    out_dir = Path(out_dir) if out_dir else workdir.evaluate_dir(work_dir)
    outputs, template, _ = score_test_units(work_dir, detector.calibrated(calibration), out_dir, device, on_subject)
    asked = deep_update(overrides or {}, {"diffusion": {"samples": samples}} if samples is not None else {})
    return {"overrides": asked, "calibration": calibration, "derivatives": str(out_dir),
            "outputs": summarise_outputs(outputs), "template_grid": summarise_method(template, n_resamples=0),
            "per_subject": [s.row() for s in outputs]}
