"""NIfTI reading with input checks, and writing that keeps the affine and is atomic."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_with_atomic


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype: type | None = None) -> None:
    """Save ``data`` with ``affine`` (voxel → RAS mm) atomically; qform and sform both set."""
    arr = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    write_with_atomic(Path(path), lambda tmp: nib.save(img, tmp), suffix=".nii.gz")


class InputError(UserError):
    """A bad input file; the message names the file (and subject, where known) and what to do."""


def load_volume(path: Path, what: str = "image", allow_empty: bool = False) -> nib.Nifti1Image:
    """Load a 3D NIfTI and check what later stages rely on.

    Rejects: missing or unreadable files, non-NIfTI content, 4D data, NaN/Inf voxels, an all-zero
    image (unless ``allow_empty``), a singular affine and absurd voxel sizes (outside 0.1–20 mm).
    The returned image holds its data in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found; check the path")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt / truncated / foreign files
        raise InputError(f"{path}: cannot read {what} as NIfTI ({exc.__class__.__name__}); "
                         "the file is corrupt, truncated or not NIfTI: re-export it") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: {what} is a {type(img).__name__}, not NIfTI; convert it to .nii.gz")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        img = nib.Nifti1Image(data, img.affine, img.header)
    if data.ndim != 3:
        raise InputError(f"{path}: {what} has {data.ndim} dimensions {data.shape}; a 3D volume is needed "
                         "(split 4D series and pick one volume)")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: {what} has {bad} NaN/Inf voxels; fix or replace them (e.g. with 0) first")
    if not allow_empty and not np.any(data):
        raise InputError(f"{path}: {what} is all zeros; the file holds no image")
    affine = img.affine
    if affine is None or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError(f"{path}: {what} has a singular or invalid affine; fix the header's qform/sform")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if zooms.min() < 0.1 or zooms.max() > 20:
        raise InputError(f"{path}: {what} has absurd voxel sizes {np.round(zooms, 3).tolist()} mm; "
                         "fix the header's pixdim / affine")
    return nib.Nifti1Image(data, affine, img.header)  # data already in memory: no second decompression


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image, tol_mm: float = 1e-2) -> bool:
    """True when both images have the same shape and (within ``tol_mm``) the same affine."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=tol_mm)
