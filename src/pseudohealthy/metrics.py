"""Metrics: pixel, image (R@k) and subject level, with bootstrap CIs (over subjects, and over subjects and
seeds).

Every function takes plain arrays (the bootstraps: items and a statistic of them) so it can be checked
against hand-computed answers. Scores and masks are restricted to the brain by the caller. Nothing of the
package is imported here, so calibration (``detect``), the evaluation and the phantom's ground truth all
measure with the same code from below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi
from sklearn.metrics import average_precision_score, roc_auc_score


def _flat(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, score = np.asarray(truth).ravel().astype(bool), np.asarray(score).ravel().astype(np.float64)
    if truth.shape != score.shape:
        raise ValueError(f"truth and score differ in size: {truth.shape} vs {score.shape}")
    return truth, score


def pixel_auprc(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision of ``score`` for the lesion voxels; NaN without any lesion voxel."""
    truth, score = _flat(truth, score)
    return float(average_precision_score(truth, score)) if truth.any() else float("nan")


def pixel_auroc(truth: np.ndarray, score: np.ndarray) -> float:
    truth, score = _flat(truth, score)
    return float(roc_auc_score(truth, score)) if truth.any() and not truth.all() else float("nan")


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """2|A∩B| / (|A| + |B|); 1 when both are empty."""
    a, b = np.asarray(prediction, bool), np.asarray(truth, bool)
    total = int(a.sum()) + int(b.sum())
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def threshold_candidates(pool: np.ndarray, candidates: int = 200) -> np.ndarray:
    """Candidate thresholds for a pooled score sample: quantiles evenly spaced over the upper half and
    geometrically dense in the far tail (down to a tenth of one voxel), where a lesion of 0.1 % of the
    brain puts the best threshold. Validation calibration and the oracle use this same grid."""
    pool = np.asarray(pool).ravel()
    levels = np.concatenate([np.linspace(0.5, 1.0, candidates, endpoint=False),
                             1 - np.geomspace(0.5, 0.1 / max(pool.size, 1), candidates)])
    return np.unique(np.quantile(pool, np.clip(levels, 0, 1)))


def oracle_dice(truths: Sequence[np.ndarray], scores: Sequence[np.ndarray], candidates: int = 200) -> tuple[float, float]:
    """Best mean Dice over subjects at one threshold chosen on these same subjects (an upper bound,
    the paper's reporting); returns (dice, threshold), over ``threshold_candidates`` of the pooled scores."""
    thresholds = threshold_candidates(np.concatenate([np.asarray(s).ravel() for s in scores]), candidates)
    means = [np.mean([dice(s > q, t) for t, s in zip(truths, scores, strict=True)]) for q in thresholds]
    best = int(np.argmax(means))
    return float(means[best]), float(thresholds[best])


def lesion_cnr(score: np.ndarray, lesion: np.ndarray, brain: np.ndarray) -> float:
    """Contrast-to-noise of a lesion in a map: (mean score in the lesion − median over the rest of the
    brain) / (1.4826 · MAD over the rest of the brain), i.e. how many robust SDs of the healthy map the
    lesion stands out by. NaN without lesion voxels or when the healthy map has no spread (a map whose
    healthy part is mostly 0, e.g. a positive part, needs its signed version here)."""
    lesion, brain = np.asarray(lesion, bool), np.asarray(brain, bool)
    healthy = np.asarray(score, np.float64)[brain & ~lesion]
    inside = np.asarray(score, np.float64)[lesion & brain]
    if not inside.size or not healthy.size:
        return float("nan")
    median = float(np.median(healthy))
    mad = 1.4826 * float(np.median(np.abs(healthy - median)))
    return (float(inside.mean()) - median) / mad if mad > 0 else float("nan")


def lesion_contrast(lesion: np.ndarray, image: np.ndarray) -> float:
    """Mean image intensity in the lesion over that in a shell around it (voxels 2–4 dilations out): the
    FLAIR contrast ratio by which the benchmark's conspicuity strata and the phantom's truth are defined."""
    lesion = np.asarray(lesion, bool)
    shell = ndi.binary_dilation(lesion, iterations=4) & ~ndi.binary_dilation(lesion, iterations=1)
    if not lesion.any() or not shell.any():
        return float("nan")
    return float(np.asarray(image)[lesion].mean() / np.asarray(image)[shell].mean())


def recall_at_k(truth_slices: np.ndarray, score_slices: np.ndarray, k_pixels: float) -> tuple[float, int]:
    """Image-level recall as the paper: for each slice (first axis) that contains lesion, the
    anomaly map's maximum counts as recalled when it lies within ``k_pixels`` of the lesion
    (Euclidean in-plane distance, 0 inside). Returns (fraction recalled, number of lesion slices)."""
    truth_slices, score_slices = np.asarray(truth_slices, bool), np.asarray(score_slices)
    if truth_slices.shape != score_slices.shape or truth_slices.ndim != 3:
        raise ValueError("truth and score must both be (slices, H, W)")
    hits = []
    for truth, score in zip(truth_slices, score_slices, strict=True):
        if not truth.any():
            continue
        peak = np.unravel_index(int(np.argmax(score)), score.shape)
        hits.append(ndi.distance_transform_edt(~truth)[peak] <= k_pixels)
    return (float(np.mean(hits)) if hits else float("nan")), len(hits)


def k_pixels_for(k_paper_pixels: float, pixel_mm: float, paper_pixel_mm: float = 1.0) -> float:
    """The paper's k (pixels of its 256 px ≈ 1 mm slices) expressed in pixels of another grid."""
    return k_paper_pixels * paper_pixel_mm / pixel_mm


def distance_to_lesion_mm(point_vox: Sequence[int], truth: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Distance (mm) from a voxel to the nearest lesion voxel; 0 inside; NaN without lesion."""
    truth = np.asarray(truth, bool)
    if not truth.any():
        return float("nan")
    return float(ndi.distance_transform_edt(~truth, sampling=spacing_mm)[tuple(int(i) for i in point_vox)])


def bootstrap_cis(items: Sequence, statistic: Callable[[list], dict[str, float]], n_resamples: int = 1000,
                  seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile CIs of every value of ``statistic`` (a dict) over items resampled with replacement;
    one statistic call per resample, NaN values dropped per key."""
    items = list(items)
    if not items:
        return {}
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        for key, value in statistic([items[i] for i in rng.integers(0, len(items), len(items))]).items():
            values.setdefault(key, [])
            if np.isfinite(value):
                values[key].append(value)
    tail = (1 - level) / 2 * 100
    return {key: (tuple(float(v) for v in np.percentile(vals, [tail, 100 - tail])) if vals
                  else (float("nan"), float("nan"))) for key, vals in values.items()}


def bootstrap_ci(items: Sequence, statistic: Callable[[list], float], n_resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of ``statistic`` over subjects resampled with replacement (NaN resamples dropped)."""
    cis = bootstrap_cis(items, lambda sample: {"value": statistic(sample)}, n_resamples, seed, level)
    return cis.get("value", (float("nan"), float("nan")))


def seed_subject_cis(runs: Sequence[Sequence], statistic: Callable[[list], dict],
                     n_resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % CIs over subjects and seeds: ``runs`` holds one list per seed with the same units in the same
    order (e.g. ``evaluation.native_scores.OutputScore``); each resample draws units with replacement and, for
    each drawn unit, one of its seeds' results."""
    if not runs or any(len(r) != len(runs[0]) for r in runs):
        raise ValueError("every seed's run must score the same units")
    by_unit = list(zip(*runs, strict=True))
    rng = np.random.default_rng([seed, 1])
    return bootstrap_cis(by_unit, lambda sample: statistic([unit[rng.integers(len(unit))] for unit in sample]),
                         n_resamples, seed)


def paired_difference_cis(runs_a: Sequence[Sequence], runs_b: Sequence[Sequence],
                          statistic: Callable[[list], dict], n_resamples: int = 1000,
                          seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % CIs of ``statistic(A) - statistic(B)`` over subjects and seeds for two methods scored on the same
    units (one list per seed each, same units in the same order; each score names its ``unit``): each resample
    draws units with replacement, the same units for both methods (paired), and for each drawn unit one of each
    method's seeds."""
    if not runs_a or not runs_b or [s.unit for s in runs_a[0]] != [s.unit for s in runs_b[0]]:
        raise ValueError("a paired comparison needs both methods scored on the same units in the same order")
    by_unit = list(zip(zip(*runs_a, strict=True), zip(*runs_b, strict=True), strict=True))
    rng = np.random.default_rng([seed, 2])

    def difference(sample) -> dict:
        a = statistic([unit_a[rng.integers(len(unit_a))] for unit_a, _ in sample])
        b = statistic([unit_b[rng.integers(len(unit_b))] for _, unit_b in sample])
        return {key: a[key] - b[key] for key in a if isinstance(a[key], float)}

    return bootstrap_cis(by_unit, difference, n_resamples, seed)
