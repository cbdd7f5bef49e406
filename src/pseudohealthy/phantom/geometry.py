"""Subject geometry: acquisition grids, rigid poses and smooth deformations.

Frames (all in mm):
- template: MNI152 1 mm grid, where the tissue maps live;
- anatomical: the subject's own brain, ``template = c + (x − c) / scale + u(x)`` (u smooth);
- T1 world: scanner space of the T1 scan, ``world = P · anatomical``;
- FLAIR world: the head moved between scans, ``flair_world = M · t1_world``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from pseudohealthy.io.atomic import write_with_atomic

_AXIS_DIRS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


@dataclass(frozen=True)
class Grid:
    """A voxel grid in some world frame: ``shape`` and ``affine`` (voxel index -> mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def voxel_coords(self) -> np.ndarray:
        """(3, N) float32 voxel indices in C order."""
        return np.indices(self.shape, dtype=np.float32).reshape(3, -1)


def make_grid(axcodes: str, voxel_mm: tuple[float, float, float], fov_mm: tuple[float, float, float],
              center_mm: np.ndarray) -> Grid:
    """A grid whose array axes point along ``axcodes`` (e.g. "LPS"), covering ``fov_mm`` (x, y, z extent
    in world mm) and centred on ``center_mm``. ``voxel_mm`` is per array axis."""
    rot = np.zeros((3, 3))
    shape = []
    for k, code in enumerate(axcodes):
        axis, sign = _AXIS_DIRS[code]
        rot[axis, k] = sign * voxel_mm[k]
        shape.append(int(np.ceil(fov_mm[axis] / voxel_mm[k])))
    affine = np.eye(4)
    affine[:3, :3] = rot
    center_index = (np.array(shape) - 1) / 2.0
    affine[:3, 3] = np.asarray(center_mm) - rot @ center_index
    return Grid(tuple(shape), affine)


def rigid_matrix(angles_deg: np.ndarray, translation_mm: np.ndarray, center_mm: np.ndarray) -> np.ndarray:
    """4x4 rotation about ``center_mm`` (xyz Euler angles, degrees) followed by a translation."""
    rot = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    mat = np.eye(4)
    mat[:3, :3] = rot
    mat[:3, 3] = center_mm - rot @ center_mm + translation_mm
    return mat


def random_rigid(rng: np.random.Generator, max_angle_deg: float, max_shift_mm: float,
                 center_mm: np.ndarray) -> np.ndarray:
    return rigid_matrix(rng.uniform(-max_angle_deg, max_angle_deg, 3), rng.uniform(-max_shift_mm, max_shift_mm, 3),
                        center_mm)


@dataclass(frozen=True)
class Deformation:
    """Anatomical -> template mapping: ``c + (x − c) / scale + u(x)``; u sampled on a coarse grid."""

    center_mm: np.ndarray
    scale: np.ndarray  # (3,), > 1 means the subject's brain is larger than the template
    field: np.ndarray  # (3, nx, ny, nz) displacement in mm on the control grid
    field_origin_mm: np.ndarray
    field_spacing_mm: float

    def save(self, path: Path) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, center_mm=self.center_mm, scale=self.scale, field=self.field,
                                    field_origin_mm=self.field_origin_mm, field_spacing_mm=self.field_spacing_mm)

        write_with_atomic(path, write)

    @classmethod
    def load(cls, path: Path) -> "Deformation":
        with np.load(path) as z:
            return cls(z["center_mm"], z["scale"], z["field"], z["field_origin_mm"], float(z["field_spacing_mm"]))

    def to_template_mm(self, points: np.ndarray) -> np.ndarray:
        """Map (3, N) anatomical points to template mm."""
        c = self.center_mm[:, None]
        out = c + (points - c) / self.scale[:, None]
        idx = (points - self.field_origin_mm[:, None]) / self.field_spacing_mm
        for k in range(3):
            out[k] += ndi.map_coordinates(self.field[k], idx, order=1, mode="nearest", output=np.float32)
        return out

    def from_template_mm(self, points: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Map (3, N) template points to anatomical mm: the inverse of :meth:`to_template_mm`, by fixed-point
        iteration (the displacement is smooth and a few mm, so it converges to well under 0.01 mm)."""
        points = np.asarray(points, np.float64)
        c, s = self.center_mm[:, None], self.scale[:, None]
        x = c + s * (points - c)
        for _ in range(iterations):
            u = self.to_template_mm(x) - (c + (x - c) / s)
            x = c + s * (points - u - c)
        return x


def random_deformation(rng: np.random.Generator, center_mm: np.ndarray, amplitude_mm: float,
                       scale_range: float, extent_mm: float = 130.0, spacing_mm: float = 8.0,
                       smoothness: float = 2.0) -> Deformation:
    """A smooth random displacement of RMS about ``amplitude_mm`` plus an anisotropic scale."""
    n = int(2 * extent_mm / spacing_mm) + 1
    noise = rng.standard_normal((3, n, n, n)).astype(np.float32)
    field = np.stack([ndi.gaussian_filter(noise[k], smoothness) for k in range(3)])
    field *= amplitude_mm / max(float(field.std()), 1e-6)
    scale = 1.0 + rng.uniform(-scale_range, scale_range, 3)
    return Deformation(np.asarray(center_mm, float), scale, field, np.asarray(center_mm, float) - extent_mm,
                       spacing_mm)


def pull_template_voxels(grid: Grid, world_to_anat: np.ndarray, deformation: Deformation,
                         template_affine: np.ndarray, slice_offsets: np.ndarray | None = None) -> np.ndarray:
    """For every voxel of ``grid`` the template voxel coordinate it shows: (3, N) float32.

    ``world_to_anat`` maps the grid's world frame to the anatomical frame. ``slice_offsets``
    (in voxels along the last array axis) adds sub-slice sample points for thick slices;
    then the result is (3, len(offsets) * N).
    """
    ijk = grid.voxel_coords()
    if slice_offsets is not None:
        ijk = np.concatenate([ijk + np.array([[0], [0], [o]], np.float32) for o in slice_offsets], axis=1)
    vox_to_anat = world_to_anat @ grid.affine
    anat = (vox_to_anat[:3, :3] @ ijk + vox_to_anat[:3, 3:4]).astype(np.float32)
    tmpl_mm = deformation.to_template_mm(anat)
    inv = np.linalg.inv(template_affine)
    return (inv[:3, :3] @ tmpl_mm + inv[:3, 3:4]).astype(np.float32)


def smooth_bias_field(rng: np.random.Generator, grid: Grid, strength: float) -> np.ndarray:
    """Multiplicative bias exp(b), b a random quadratic polynomial in normalised world coords."""
    world = grid.affine[:3, :3] @ grid.voxel_coords() + grid.affine[:3, 3:4]
    center = world.mean(axis=1, keepdims=True)
    q = (world - center) / 100.0
    terms = [q[0], q[1], q[2], q[0] * q[1], q[1] * q[2], q[0] * q[2], q[0] ** 2, q[1] ** 2, q[2] ** 2]
    coefs = rng.normal(0, 1, len(terms))
    b = sum(c * t for c, t in zip(coefs, terms))
    b *= strength / max(float(np.abs(b).max()), 1e-6)
    return np.exp(b).reshape(grid.shape).astype(np.float32)
