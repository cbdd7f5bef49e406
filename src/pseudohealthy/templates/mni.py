"""MNI152 (ICBM 2009a symmetric, 1 mm) T1, brain mask and tissue probability maps from nilearn.

Only the bundled ``load_mni152_*`` functions are used; the ``fetch_*`` ones would download.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True)
class TissuePriors:
    """Tissue probabilities on the 1 mm MNI152 grid; ``gm + wm + csf == brain`` inside the brain."""

    t1: np.ndarray  # (X, Y, Z) float32 in [0, 1], skull-stripped template intensity
    brain: np.ndarray  # bool
    gm: np.ndarray  # float32 in [0, 1]
    wm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray  # voxel -> RAS mm


def _array(img) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32)


@cache
def load_tissue_priors() -> TissuePriors:
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    brain = _array(datasets.load_mni152_brain_mask(resolution=1)) > 0.5
    gm = np.clip(_array(datasets.load_mni152_gm_template(resolution=1)), 0, 1)
    wm = np.clip(_array(datasets.load_mni152_wm_template(resolution=1)), 0, 1)
    gm *= brain
    wm *= brain
    total = gm + wm
    over = total > 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    # What the brain mask holds beyond GM and WM is CSF (ventricles, sulci).
    csf = np.where(brain, 1.0 - gm - wm, 0.0).astype(np.float32)
    for arr in (gm, wm, csf):
        arr.setflags(write=False)
    return TissuePriors(
        t1=_array(t1_img), brain=brain, gm=gm, wm=wm, csf=csf, affine=np.asarray(t1_img.affine, dtype=np.float64)
    )
