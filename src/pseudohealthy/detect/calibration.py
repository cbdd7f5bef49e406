"""``calibrate``: the decision threshold, chosen on the validation subjects and stored with the N it is for
and the cluster settings it was chosen with (``anomaly.clusters.ClusterSettings``).

The threshold is one anomaly score; ``detect`` writes maps on the scale s / (s + threshold)
(``anomaly.maps.score_to_unit``), where it sits at 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pseudohealthy import __version__, workdir
from pseudohealthy.anomaly.clusters import count_clusters
from pseudohealthy.config import Config
from pseudohealthy.data.splits import roles
from pseudohealthy.detect.detector import Detector
from pseudohealthy.detect.pipeline import SubjectMaps, analyse
from pseudohealthy.errors import UserError
from pseudohealthy.metrics import dice, pixel_auprc, threshold_candidates
from pseudohealthy.models.trained import save_calibration


def analyse_role(work_dir: Path, role: str, models, cfg: Config, device: str = "cpu",
                 on_subject: Callable[[str], None] | None = None) -> dict[str, SubjectMaps]:
    """Template-grid results for every prepared subject with ``role`` in splits.tsv."""
    out = {}
    for pid in [p for p, r in roles(work_dir).items() if r == role]:
        out[pid] = analyse(workdir.subject_dir(work_dir, pid), models, cfg, device)
        if on_subject:
            on_subject(pid)
    return out


def choose_threshold(maps: list[SubjectMaps], cfg: Config, candidates: int = 200) -> tuple[float, float]:
    """Threshold maximising the mean Dice over validation patients; (threshold, that Dice).

    Candidates are ``threshold_candidates`` of the anomaly scores inside the brains (the oracle's grid,
    dense in the far tail where a lesion of 0.1 % of the brain puts the best threshold), and Dice is
    counted over brain voxels, as the oracle's. Where validation controls exist, only thresholds that
    leave them at most ``method.max_control_clusters`` clusters on average are allowed (the highest
    candidate if none does), so a threshold that fits one small lesion cannot flood healthy brains with
    clusters. Among equal Dice (e.g. 0 everywhere), the lowest allowed threshold wins.
    """
    patients = [m for m in maps if m.lesion.any()]
    controls = [m for m in maps if not m.lesion.any()]
    qs = threshold_candidates(np.concatenate([m.anomaly[m.brain] for m in maps]), candidates)
    limit = cfg.method.max_control_clusters
    if controls and limit is not None:
        min_voxels = cfg.method.min_cluster_mm3 / cfg.data.template_voxel_mm ** 3
        allowed = np.array([np.mean([count_clusters(m.anomaly, q, min_voxels) for m in controls]) <= limit
                            for q in qs])
        qs = qs[allowed] if allowed.any() else qs[-1:]
    if not patients:
        return float(qs[0]), float("nan")
    scores = [np.mean([dice(m.anomaly[m.brain] > q, m.lesion[m.brain]) for m in patients]) for q in qs]
    best = int(np.argmax(scores))
    return float(qs[best]), float(scores[best])


def calibration_from(maps: dict[str, SubjectMaps], cfg: Config) -> dict:
    """The threshold chosen on validation results and what it scored there."""
    if not maps:
        raise UserError("no validation subjects in splits.tsv; add subjects and re-run prepare")
    val = list(maps.values())
    threshold, val_dice = choose_threshold(val, cfg)
    patients = [m for m in val if m.lesion.any()]
    auprc = (pixel_auprc(np.concatenate([m.lesion[m.brain] for m in patients]),
                         np.concatenate([m.anomaly[m.brain] for m in patients])) if patients else float("nan"))
    return {
        "threshold": threshold, "min_cluster_mm3": cfg.method.min_cluster_mm3, "rank_by": cfg.method.rank_by,
        "max_control_clusters": cfg.method.max_control_clusters,
        "guidance_scale": cfg.diffusion.guidance_scale, "noise_level": cfg.diffusion.noise_level,
        "steps": cfg.diffusion.steps, "samples": cfg.diffusion.samples, "chosen_on": list(maps), "val_patients": len(patients),
        "val_dice": val_dice, "val_auprc": auprc, "version": __version__,
    }


def calibrate(work_dir: Path, device: str = "cpu", on_subject: Callable[[str], None] | None = None,
              samples: int | None = None) -> dict:
    """Run the detector on the validation subjects and store the threshold chosen there (for N =
    ``samples``, default the config's ``diffusion.samples``; detection then uses the same N)."""
    work_dir = Path(work_dir)
    detector = Detector.for_config(work_dir, Detector.settings(work_dir, samples=samples), device)
    if "val" not in roles(work_dir).values():
        raise UserError(f"{work_dir}: no validation subjects in splits.tsv; add subjects and re-run prepare")
    calibration = calibration_from(analyse_role(work_dir, "val", detector.models, detector.cfg, device, on_subject),
                                   detector.cfg)
    save_calibration(work_dir, calibration)
    return calibration
