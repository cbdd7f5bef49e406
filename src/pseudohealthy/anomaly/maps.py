"""Histogram matching and the anomaly map (METHOD.md §3, steps 3–4)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.exposure import match_histograms


def histogram_match(pseudo: np.ndarray, real: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Map the pseudo-healthy intensities inside the brain onto the real FLAIR's histogram (per volume)."""
    out = pseudo.copy()
    if brain.any():
        out[brain] = match_histograms(pseudo[brain], real[brain])
    return out


def anomaly_map(real: np.ndarray, pseudo: np.ndarray, brain: np.ndarray, mode: str = "positive",
                smoothing_vox: float = 0.0) -> np.ndarray:
    """Difference real − pseudo-healthy inside the brain; ``positive`` keeps only FLAIR-brighter signal
    (FCD raises FLAIR), ``absolute`` both signs. Optionally Gaussian-smoothed (σ in voxels). 0 outside."""
    diff = real - pseudo
    score = np.clip(diff, 0, None) if mode == "positive" else np.abs(diff)
    score = np.where(brain, score, 0.0).astype(np.float32)
    if smoothing_vox > 0:
        score = ndi.gaussian_filter(score, smoothing_vox) * brain
    return score.astype(np.float32)


def zscore_reference(flair: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The trivial no-model reference: the FLAIR's own intensity z-scored inside the brain (positive part)."""
    inside = flair[brain]
    z = (flair - inside.mean()) / max(float(inside.std()), 1e-6)
    return np.where(brain, np.clip(z, 0, None), 0.0).astype(np.float32)
