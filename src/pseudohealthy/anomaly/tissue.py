"""Where a lesion can be: the brain without its CSF, from the subject's own T1.

FCD lives in the cortex and the white matter beneath it, never in the ventricles, cisterns or sulci, yet the
CSF is where FLAIR is least reliable: inflow and pulsation leave CSF bright on FLAIR while T1 shows it dark as
ever, so no T1-conditioned synthesis can predict it and the residual peaks there (docs/phantom.md: CSF
inflow is the largest cost of our map). MAP and MELD score grey and white matter only for the same reason.
"""

from __future__ import annotations

import numpy as np

CLASSES = 3  # CSF, grey matter, white matter: the T1 of a brain has three intensity modes


def tissue_means(t1: np.ndarray, brain: np.ndarray, iterations: int = 100) -> np.ndarray:
    """The three T1 class means inside ``brain``, darkest first: one-dimensional k-means started at the
    10th, 50th and 90th percentiles (the classes' order on T1 is CSF < GM < WM whatever the contrast's scale)."""
    values = np.asarray(t1, np.float64)[np.asarray(brain, bool)]
    if values.size < CLASSES:
        raise ValueError("tissue_means: fewer brain voxels than tissue classes")
    means = np.percentile(values, [10, 50, 90])
    for _ in range(iterations):
        label = np.abs(values[:, None] - means[None]).argmin(axis=1)
        updated = np.array([values[label == k].mean() if np.any(label == k) else means[k] for k in range(CLASSES)])
        if np.allclose(updated, means):
            break
        means = updated
    return np.sort(means)


def csf_mask(t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The brain voxels whose T1 is nearer the CSF mean than the grey-matter mean (``tissue_means``): mostly
    CSF. A voxel that mixes cortex and sulcal CSF stays scored while it is at least half tissue."""
    brain = np.asarray(brain, bool)
    csf, grey, _ = tissue_means(t1, brain)
    return brain & (np.asarray(t1) < (csf + grey) / 2)
