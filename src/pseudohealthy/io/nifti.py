"""NIfTI writing that keeps the affine and is atomic."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy.io.atomic import write_with_atomic


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype: type | None = None) -> None:
    """Save ``data`` with ``affine`` (voxel → RAS mm) atomically; qform and sform both set."""
    arr = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    write_with_atomic(Path(path), lambda tmp: nib.save(img, tmp), suffix=".nii.gz")
