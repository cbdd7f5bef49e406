"""Histogram matching, the anomaly map (METHOD.md §3, steps 3–4) and its [0, 1) probseg scale."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage as ndi


# The share of brain voxels at each end of the histogram that lesion-safe matching leaves out: a lesion is
# 0.01-0.5 % of the brain, so the real FLAIR's quantiles up to 99 % describe healthy tissue.
CENTRAL_TAIL = 0.01
MATCHING = ("none", "quantile", "central", "affine")


def histogram_match(pseudo: np.ndarray, real: np.ndarray, brain: np.ndarray, knots: int = 1001,
                    mode: str = "quantile") -> np.ndarray:
    """Map the pseudo-healthy intensities inside the brain onto the real FLAIR's histogram (per volume).

    ``quantile`` (the paper's step): piecewise-linear between ``knots`` matching quantiles of the two
    histograms (Nyúl & Udupa's landmark matching with dense landmarks), spaced more densely toward both
    ends (cosine spacing: about 0.15 % apart in the middle, down to a few millionths at the ends). It
    matches the bright tail nearly voxel by voxel, which is its flaw for detection: the pseudo-healthy
    image's brightest voxels (what it left of the lesion) are mapped onto the real FLAIR's brightest,
    the lesion's own, and the difference cancels.

    Lesion-safe modes fit the mapping on the central ``1 − 2·CENTRAL_TAIL`` of both histograms only, where
    the lesion is not: ``central`` matches quantiles there and continues linearly beyond with the central
    range's mean slope; ``affine`` is the least-squares line through the central quantile pairs (a gain
    and an offset per volume). ``none`` returns the input.

    Exact rank matching (``skimage.exposure.match_histograms``) gives each voxel the FLAIR value of its
    rank, so a change of 1e-7 that swaps two near-equal voxels (another batch size's rounding) moves them
    by the gap between FLAIR order statistics, which slice standardisation then magnifies; every mode here
    is a continuous function of the intensities. Tied source quantiles map to the mean of their targets.
    """
    if mode not in MATCHING:
        raise ValueError(f"histogram matching mode {mode!r}: expected one of {', '.join(MATCHING)}")
    out = pseudo.copy()
    if mode == "none" or not brain.any():
        return out
    levels = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, knots))
    if mode != "quantile":
        levels = CENTRAL_TAIL + (1 - 2 * CENTRAL_TAIL) * levels
    source, target = np.quantile(pseudo[brain], levels), np.quantile(real[brain], levels)
    if mode == "affine":
        gain, offset = np.polyfit(source, target, 1) if np.ptp(source) > 0 else (0.0, float(np.mean(target)))
        out[brain] = gain * pseudo[brain] + offset
        return out
    xs, which = np.unique(source, return_inverse=True)
    ys = np.bincount(which, weights=target) / np.bincount(which)
    mapped = np.interp(pseudo[brain], xs, ys)
    if mode == "central" and len(xs) > 1:
        slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
        values = pseudo[brain]
        mapped = np.where(values > xs[-1], ys[-1] + slope * (values - xs[-1]), mapped)
        mapped = np.where(values < xs[0], ys[0] + slope * (values - xs[0]), mapped)
    out[brain] = mapped
    return out


def anomaly_map(difference: np.ndarray, brain: np.ndarray, mode: str = "positive", smoothing_vox: float = 0.0,
                slice_standardise: bool = False) -> np.ndarray:
    """From a real − pseudo-healthy difference to the anomaly map: ``positive`` keeps only FLAIR-brighter
    signal (FCD raises FLAIR), ``absolute`` both signs; then ``postprocess``; ``positive_last`` post-processes
    the signed difference and keeps its positive part at the end. 0 outside the brain."""
    if mode == "positive_last":
        return np.clip(postprocess(difference, brain, smoothing_vox, slice_standardise, keep_sign=True), 0, None)
    score = np.clip(difference, 0, None) if mode == "positive" else np.abs(difference)
    return postprocess(score, brain, smoothing_vox, slice_standardise)


def postprocess(score: np.ndarray, brain: np.ndarray, smoothing_vox: float = 0.0,
                slice_standardise: bool = False, keep_sign: bool = False) -> np.ndarray:
    """The map post-processing shared by every method: mask, smooth, optionally standardise slices.
    ``keep_sign``: standardised slices keep their negative part (a signed map, for contrast-to-noise)."""
    score = np.where(brain, score, 0.0).astype(np.float32)
    if smoothing_vox > 0:
        score = ndi.gaussian_filter(score, smoothing_vox) * brain
    if slice_standardise:
        score = standardise_slices(score, brain, keep_sign)
    return score.astype(np.float32)


def standardise_slices(score: np.ndarray, brain: np.ndarray, keep_sign: bool = False) -> np.ndarray:
    """Per axial slice, (score − median) / (1.4826 · MAD) inside the brain, negative part set to 0
    (kept with ``keep_sign``).

    Slices are synthesised independently and their residual level varies (most at the top and
    bottom of the brain, where a slice holds little tissue); a lesion is a small part of its slice,
    so the median and MAD describe the slice's healthy residual.
    """
    inside = np.where(brain, score, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # slices without brain: all-NaN
        median = np.nanmedian(inside, axis=(0, 1), keepdims=True)
        mad = 1.4826 * np.nanmedian(np.abs(inside - median), axis=(0, 1), keepdims=True)
    z = (score - np.nan_to_num(median)) / np.maximum(np.nan_to_num(mad), 1e-6)
    return np.where(brain, z if keep_sign else np.clip(z, 0, None), 0.0).astype(np.float32)


def score_to_unit(score: np.ndarray, threshold: float) -> np.ndarray:
    """Map anomaly scores (≥ 0, any scale) monotonically to [0, 1) for a probseg map:
    s / (s + threshold), so the validation-chosen threshold sits at 0.5 (not a calibrated probability).
    ``anomaly.clusters.relative_peak`` reads a cluster's peak back as s / threshold."""
    score = np.clip(score, 0, None)
    return (score / (score + max(threshold, 1e-12))).astype(np.float32)
