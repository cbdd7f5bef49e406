"""The non-learning reference: each voxel of a FLAIR z-scored against the training controls' FLAIRs at
the same template voxel (all volumes are on the template grid after ``prepare``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy import workdir
from pseudohealthy.data.splits import training_controls
from pseudohealthy.errors import UserError


@dataclass
class ControlStats:
    mean: np.ndarray  # (H, W, Z) mean normalised FLAIR of the training controls
    std: np.ndarray  # voxel-wise standard deviation, floored (see fit_control_stats)
    participants: list[str]


def fit_control_stats(work_dir: Path) -> ControlStats:
    """Mean and std over the training controls of WORK_DIR/splits.tsv.

    With a handful of controls a voxel's std can be near 0 by chance, and dividing by it would make
    that voxel the brightest in every map; the std is therefore floored at its median over the voxels
    the controls' brains cover.
    """
    work_dir = Path(work_dir)
    controls = training_controls(work_dir)
    if len(controls) < 2:
        raise UserError(f"{work_dir}: the control z-score needs at least 2 training controls in splits.tsv, "
                        f"found {len(controls)}")
    flairs, brains = [], []
    for pid in controls:
        subject = workdir.subject_dir(work_dir, pid)
        flairs.append(np.asanyarray(nib.load(workdir.volume_file(subject, "flair")).dataobj).astype(np.float32))
        brains.append(np.asanyarray(nib.load(workdir.volume_file(subject, "brain")).dataobj) > 0)
    stack = np.stack(flairs)
    mean, std = stack.mean(axis=0), stack.std(axis=0, ddof=1)
    covered = np.any(brains, axis=0)
    floor = float(np.median(std[covered])) if covered.any() else 1.0
    return ControlStats(mean, np.maximum(std, max(floor, 1e-6)), controls)


def control_zscore(flair: np.ndarray, stats: ControlStats) -> np.ndarray:
    """(FLAIR − control mean) / control std, voxel-wise."""
    if flair.shape != stats.mean.shape:
        raise UserError(f"FLAIR grid {flair.shape} differs from the controls' grid {stats.mean.shape}; "
                        "prepare every subject with the same preset")
    return ((flair - stats.mean) / stats.std).astype(np.float32)
