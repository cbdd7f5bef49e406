"""The model's working grid: axial slices of ``image_size``² pixels at ``voxel_mm`` in MNI space."""

from __future__ import annotations

from functools import cache

import numpy as np

from pseudohealthy.templates.mni import load_tissue_priors


@cache
def template_grid(voxel_mm: float, image_size: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, RAS affine) of an isotropic grid centred on the MNI152 brain.

    In-plane it is ``image_size`` × ``image_size`` voxels; along z it covers the brain plus one
    voxel either side. Array axis 2 is inferior → superior, so ``volume[:, :, k]`` is an axial slice.
    """
    priors = load_tissue_priors()
    ijk = np.argwhere(priors.brain)
    lo_mm = priors.affine[:3, :3] @ ijk.min(axis=0) + priors.affine[:3, 3]
    hi_mm = priors.affine[:3, :3] @ ijk.max(axis=0) + priors.affine[:3, 3]
    center = (lo_mm + hi_mm) / 2
    n_z = int(np.ceil((hi_mm[2] - lo_mm[2]) / voxel_mm)) + 2
    shape = (image_size, image_size, n_z)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = center - voxel_mm * (np.array(shape) - 1) / 2
    return shape, affine
