"""The normative residual: each template voxel's residual z-scored against the healthy controls' residuals
at that voxel (as FCD tools such as MAP and MELD z-score their features against controls), so places the
translator always gets wrong (cortex edges, ventricles) stop producing false peaks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.io.atomic import write_with_atomic


@dataclass
class NormativeStats:
    mean: np.ndarray  # (H, W, Z) voxel-wise mean residual of the controls
    std: np.ndarray  # voxel-wise SD, smoothed and floored (see fit_normative)
    participants: list[str]

    def zscore(self, residual: np.ndarray) -> np.ndarray:
        """(residual − control mean) / control SD, voxel-wise."""
        return ((residual - self.mean) / self.std).astype(np.float32)


def fit_normative(residuals: list[np.ndarray], brains: list[np.ndarray], participants: list[str],
                  smoothing_vox: float = 1.0) -> NormativeStats:
    """Mean and SD over the controls' residuals (0 outside each control's brain, which is counted).

    With a dozen controls a voxel's SD can be near 0 by chance, and dividing by it would make that voxel
    the brightest of every map: the SD is smoothed (Gaussian, ``smoothing_vox``) and floored at its median
    over the voxels the controls' brains cover.
    """
    if len(residuals) < 2:
        raise ValueError(f"the normative residual needs at least 2 controls, got {len(residuals)}")
    stack = np.stack([np.where(b, r, 0.0) for r, b in zip(residuals, brains, strict=True)])
    std = stack.std(axis=0, ddof=1)
    if smoothing_vox > 0:
        std = ndi.gaussian_filter(std, smoothing_vox)
    covered = np.any(brains, axis=0)
    floor = max(float(np.median(std[covered])) if covered.any() else 1.0, 1e-6)
    return NormativeStats(stack.mean(axis=0).astype(np.float32), np.maximum(std, floor).astype(np.float32),
                          list(participants))


def save_normative(path: Path, stats: NormativeStats, key: str) -> None:
    """Write ``stats`` with the ``key`` of the settings and networks they were fitted for (atomic)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, mean=stats.mean, std=stats.std, participants=np.array(stats.participants),
                                key=np.array(key))

    write_with_atomic(Path(path), write, suffix=".npz")


def load_normative(path: Path) -> tuple[NormativeStats, str]:
    """The stats and their key; plain arrays only (no pickled objects are loaded)."""
    with np.load(path, allow_pickle=False) as stored:
        return (NormativeStats(stored["mean"], stored["std"], [str(p) for p in stored["participants"]]),
                str(stored["key"]))
