"""Conversions between nibabel (RAS, array axes i, j, k) and SimpleITK (LPS, array axes z, y, x)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import SimpleITK as sitk

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def to_sitk(data: np.ndarray, affine: np.ndarray, dtype: type = np.float32) -> sitk.Image:
    """A SimpleITK image with the same voxels and world geometry as ``(data, affine)``."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, dtype=dtype).transpose(2, 1, 0)))
    lps = _RAS_TO_LPS @ np.asarray(affine, float)[:3, :]
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    img.SetSpacing(spacing.tolist())
    img.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    return img


def nib_to_sitk(img: nib.Nifti1Image, dtype: type = np.float32) -> sitk.Image:
    return to_sitk(np.asanyarray(img.dataobj), img.affine, dtype)


def affine_of(img: sitk.Image) -> np.ndarray:
    """RAS voxel-to-world affine of a SimpleITK image."""
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    out = np.eye(4)
    out[:3, :] = _RAS_TO_LPS @ lps[:3, :]
    return out


def from_sitk(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(data with axes i, j, k; RAS affine)."""
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), affine_of(img)


def reference(shape: tuple[int, ...], affine: np.ndarray) -> sitk.Image:
    """An empty image that defines a resampling grid."""
    return to_sitk(np.zeros(shape, np.uint8), affine, np.uint8)


def ras_to_lps_matrix(matrix_ras: np.ndarray) -> np.ndarray:
    """Express a 4x4 world transform given in RAS coordinates in LPS coordinates."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ np.asarray(matrix_ras, float) @ flip
