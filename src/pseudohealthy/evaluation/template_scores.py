"""Every number of EVALUATION.md for one method on the test subjects, on the template grid, with 95 % bootstrap
CIs.

Per subject, ``score_subject`` reduces the template-grid maps to what the metrics need; ``aggregate``
turns a list of those into the headline figures, so resampling subjects (the bootstrap) only re-runs
``aggregate``. Computed on the template grid (isotropic voxels of ``data.template_voxel_mm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pseudohealthy.anomaly.clusters import ClusterSettings, find_clusters
from pseudohealthy.config import Config
from pseudohealthy.data.labels import CLASS_NAMES
from pseudohealthy.detect.pipeline import SubjectMaps
from pseudohealthy.evaluation.native_scores import peaks_near_lesion
from pseudohealthy.metrics import (
    bootstrap_cis,
    dice,
    distance_to_lesion_mm,
    k_pixels_for,
    oracle_dice,
    pixel_auprc,
    pixel_auroc,
    recall_at_k,
)

RECALL_K = (5, 10)  # the paper's k, in pixels of its 256 px ≈ 1 mm slices
CI_METRICS = ("auprc", "r@5", "r@10", "dice_val", "top1")  # the headline figures, with bootstrap CIs


@dataclass
class SubjectScore:
    participant_id: str
    patient: bool
    truth: np.ndarray  # lesion, brain voxels only (bool)
    score: np.ndarray  # anomaly map, brain voxels only
    dice: float  # at the validation-chosen threshold (patients)
    recalled: dict[int, tuple[int, int]]  # k -> (lesion slices recalled at k, lesion slices)
    top1: bool
    top3: bool
    clusters: int  # above threshold
    false_clusters: int  # clusters whose peak is not near the lesion (all of a control's)
    peak_distance_mm: float  # top cluster's peak to the lesion (NaN: no cluster / control)
    lobe_correct: float  # top cluster's lobe is one of the lesion's lobes (1/0; NaN: n/a)
    classifier_lobe_correct: float  # the 9-class classifier's lobe at its most abnormal slice (NaN: n/a)


def score_subject(pid: str, maps: SubjectMaps, threshold: float | ClusterSettings, cfg: Config,
                  affine: np.ndarray, lobe: np.ndarray | None, truth_class: int) -> SubjectScore:
    """``threshold``: a calibration's cluster settings (``ClusterSettings.of``, what ``detect`` clusters
    with), or a bare threshold for maps scored without one (smallest cluster and ranking then from
    ``cfg.method``, as ``calibrate`` records them); ``lobe``: the subject's template-grid lobe map;
    ``truth_class``: its lesion class (0 for controls)."""
    settings = threshold if isinstance(threshold, ClusterSettings) else ClusterSettings(
        threshold, cfg.method.min_cluster_mm3, cfg.method.rank_by)
    threshold = settings.threshold
    voxel_mm = cfg.data.template_voxel_mm
    patient = bool(maps.lesion.any())
    clusters, _ = find_clusters(maps.anomaly, affine, threshold, settings.min_cluster_mm3, lobe,
                                rank_by=settings.rank_by)
    hits = peaks_near_lesion([c.peak_mm for c in clusters], maps.lesion, affine)
    recalled = {}
    distance = lobe_ok = float("nan")
    if patient:
        for k in RECALL_K:  # axial slices, k scaled to the paper's millimetres
            fraction, n = recall_at_k(maps.lesion.transpose(2, 0, 1), maps.anomaly.transpose(2, 0, 1),
                                      k_pixels_for(k, voxel_mm))
            recalled[k] = (int(round(fraction * n)) if n else 0, n)
        if clusters:
            peak = np.round(np.linalg.solve(affine[:3, :3], np.asarray(clusters[0].peak_mm) - affine[:3, 3]))
            distance = distance_to_lesion_mm(peak.astype(int), maps.lesion, (voxel_mm,) * 3)
            lobe_ok = float(clusters[0].lobe in CLASS_NAMES[truth_class].split(","))
    return SubjectScore(
        participant_id=pid, patient=patient, truth=maps.lesion[maps.brain], score=maps.anomaly[maps.brain],
        dice=dice(maps.anomaly[maps.brain] > threshold, maps.lesion[maps.brain]) if patient else float("nan"),
        recalled=recalled, top1=bool(hits[:1] == [True]), top3=any(hits[:3]),
        clusters=len(clusters), false_clusters=sum(not h for h in hits),
        peak_distance_mm=distance, lobe_correct=lobe_ok,
        classifier_lobe_correct=_classifier_lobe(maps, truth_class) if patient else float("nan"))


def _classifier_lobe(maps: SubjectMaps, truth_class: int) -> float:
    """1 when the 9-class classifier, at the slice it finds most abnormal, names the lesion's class."""
    probs = maps.synthesis.class_probabilities[maps.synthesis.slices]
    if probs.shape[1] != len(CLASS_NAMES) or not probs.any():
        return float("nan")
    z = int(np.argmax(1 - probs[:, 0]))
    return float(int(np.argmax(probs[z, 1:])) + 1 == truth_class)


def _mean(values) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def aggregate(subjects: list[SubjectScore], headline_only: bool = False) -> dict[str, float]:
    """The figures over ``subjects`` (pixel metrics pool the patients' brain voxels); ``headline_only``:
    just ``CI_METRICS`` (what the bootstrap recomputes for every resample)."""
    patients = [s for s in subjects if s.patient]
    controls = [s for s in subjects if not s.patient]
    out: dict[str, float] = {}
    if patients:
        truth = np.concatenate([s.truth for s in patients])
        score = np.concatenate([s.score for s in patients])
        out["auprc"] = pixel_auprc(truth, score)
        if not headline_only:
            out["auroc"] = pixel_auroc(truth, score)
        for k in RECALL_K:  # pooled over the patients' lesion slices, as the paper
            n = sum(s.recalled[k][1] for s in patients)
            out[f"r@{k}"] = sum(s.recalled[k][0] for s in patients) / n if n else float("nan")
    else:
        out.update({"auprc": float("nan"), "auroc": float("nan"), **{f"r@{k}": float("nan") for k in RECALL_K}})
    out["dice_val"] = _mean(s.dice for s in patients)
    out["top1"] = _mean(float(s.top1) for s in patients)
    if headline_only:
        return out
    out["top3"] = _mean(float(s.top3) for s in patients)
    out["fp_per_patient"] = _mean(s.false_clusters for s in patients)
    out["fp_per_control"] = _mean(s.clusters for s in controls)
    out["specificity"] = _mean(float(s.clusters == 0) for s in controls)
    out["peak_distance_mm"] = float(np.nanmedian([s.peak_distance_mm for s in patients])) \
        if any(np.isfinite(s.peak_distance_mm) for s in patients) else float("nan")
    out["lobe_accuracy"] = _mean(s.lobe_correct for s in patients)
    out["classifier_lobe_accuracy"] = _mean(s.classifier_lobe_correct for s in patients)
    return out


def summarise_method(subjects: list[SubjectScore], n_resamples: int = 300, seed: int = 0) -> dict:
    """Headline figures, the oracle Dice, and 95 % bootstrap CIs (over subjects) for ``CI_METRICS``."""
    out = aggregate(subjects)
    patients = [s for s in subjects if s.patient]
    out["dice_oracle"] = oracle_dice([s.truth for s in patients], [s.score for s in patients])[0] \
        if patients else float("nan")
    cis = bootstrap_cis(subjects, lambda sample: aggregate(sample, headline_only=True), n_resamples, seed)
    for name in CI_METRICS:
        out[f"{name}_ci"] = list(cis.get(name, (float("nan"), float("nan"))))
    out["patients"], out["controls"] = len(patients), len(subjects) - len(patients)
    out["lesion_slices"] = sum(s.recalled[RECALL_K[0]][1] for s in patients)
    return out
