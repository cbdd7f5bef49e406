"""Headline figures on test subjects: pixel AUPRC and subject-level detection, for the method and for the
trivial no-model reference (FLAIR z-scored inside the brain), both with the method's map
post-processing (``reference``) and without (``raw_reference``). Computed on the template grid."""

from __future__ import annotations

import numpy as np

from pseudohealthy.anomaly.clusters import find_clusters
from pseudohealthy.config import Config
from pseudohealthy.detect.pipeline import SubjectMaps, reference_maps
from pseudohealthy.evaluation.metrics import pixel_auprc


def _detection(score: np.ndarray, lesion: np.ndarray, affine: np.ndarray, threshold: float,
               min_mm3: float) -> tuple[bool, bool, int]:
    """(top-1 hit, any-of-top-3 hit, number of clusters)."""
    clusters, labels = find_clusters(score, affine, threshold, min_mm3)
    hits = [bool(lesion[labels == c.rank].any()) for c in clusters[:3]]
    return (bool(hits[:1] and hits[0]), any(hits), len(clusters))


def summarise(maps: dict[str, SubjectMaps], affine: np.ndarray, calibration: dict, cfg: Config) -> dict:
    """``maps``: participant_id -> template-grid results of test subjects (patients have a lesion)."""
    patients = {k: m for k, m in maps.items() if m.lesion.any()}
    controls = {k: m for k, m in maps.items() if not m.lesion.any()}
    out: dict = {"patients": len(patients), "controls": len(controls)}
    for name, score_of, threshold in (
            ("method", lambda m: m.anomaly, calibration["threshold"]),
            ("reference", lambda m: reference_maps(m, cfg).anomaly, calibration["reference_threshold"]),
            ("raw_reference", lambda m: reference_maps(m, cfg, postprocessed=False).anomaly,
             calibration.get("raw_reference_threshold", float("inf")))):
        scores = {k: score_of(m) for k, m in maps.items()}  # each map post-processed once
        if patients:
            out[f"{name}_auprc"] = pixel_auprc(np.concatenate([m.lesion[m.brain] for m in patients.values()]),
                                               np.concatenate([scores[k][m.brain] for k, m in patients.items()]))
        det = [_detection(scores[k], m.lesion, affine, threshold, calibration["min_cluster_mm3"])
               for k, m in patients.items()]
        fp = [_detection(scores[k], m.lesion, affine, threshold, calibration["min_cluster_mm3"])[2]
              for k, m in controls.items()]
        out[f"{name}_top1"] = float(np.mean([d[0] for d in det])) if det else float("nan")
        out[f"{name}_top3"] = float(np.mean([d[1] for d in det])) if det else float("nan")
        out[f"{name}_clusters_per_control"] = float(np.mean(fp)) if fp else float("nan")
    out["lesion_fraction"] = (float(np.mean(np.concatenate([m.lesion[m.brain] for m in patients.values()])))
                              if patients else float("nan"))
    return out
