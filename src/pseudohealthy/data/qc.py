"""Quality-control pictures: brain mask and T1w -> FLAIR registration, on the template grid (``prepare``)
or in the subject's own FLAIR space (``detect``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from pseudohealthy import workdir  # noqa: E402
from pseudohealthy.io.atomic import write_with_atomic  # noqa: E402


def _center_slices(vol: np.ndarray, point: np.ndarray) -> list[np.ndarray]:
    i, j, k = (int(round(p)) for p in point)
    return [vol[:, :, k].T, vol[:, j, :].T, vol[i, :, :].T]


def _qc_figure(flair: np.ndarray, t1: np.ndarray, brain: np.ndarray, lesion: np.ndarray, point: np.ndarray,
               spacing: np.ndarray, flair_range: tuple[float, float], out_png: Path, title: str, dpi: int) -> None:
    """Axial, coronal, sagittal sections (RAS arrays) through ``point``. Row 1: FLAIR with the registered
    T1w's edges (T1w -> FLAIR alignment). Row 2: FLAIR with the brain-mask outline (red) and the lesion's
    (yellow)."""
    flair_s, t1_s = _center_slices(flair, point), _center_slices(t1, point)
    brain_s = _center_slices(brain.astype(np.float32), point)
    lesion_s = _center_slices(lesion.astype(np.float32), point)
    aspects = [spacing[1] / spacing[0], spacing[2] / spacing[0], spacing[2] / spacing[1]]
    fig, axes = plt.subplots(2, 3, figsize=(7.5, 5.2), facecolor="black")
    for c in range(3):
        for r in range(2):
            axes[r, c].imshow(flair_s[c], cmap="gray", origin="lower", vmin=flair_range[0], vmax=flair_range[1],
                              interpolation="nearest", aspect=aspects[c])
            axes[r, c].set_axis_off()
        # T1 edges inside the brain only (the mask border would dominate otherwise).
        inner = ndi.binary_erosion(brain_s[c] > 0.5, iterations=2)
        grad = np.where(inner, np.hypot(*np.gradient(t1_s[c])), 0.0)
        if inner.any():
            axes[0, c].contour(grad, levels=[np.percentile(grad[inner], 80)], colors="cyan", linewidths=0.5)
        axes[1, c].contour(brain_s[c], levels=[0.5], colors="red", linewidths=0.8)
        if lesion_s[c].any():
            axes[1, c].contour(lesion_s[c], levels=[0.5], colors="yellow", linewidths=0.8)
    axes[0, 0].set_title("FLAIR + T1w edges", color="white", fontsize=9, loc="left")
    axes[1, 0].set_title("FLAIR + brain mask (red), lesion (yellow)", color="white", fontsize=9, loc="left")
    fig.suptitle(title, color="white", fontsize=10)
    fig.tight_layout()
    write_with_atomic(Path(out_png), lambda tmp: fig.savefig(tmp, dpi=dpi, facecolor="black", format="png"),
                      suffix=".png")
    plt.close(fig)


def registration_qc(subject_dir: Path, out_png: Path, title: str) -> None:
    """QC of a preprocessed subject on the template grid (``prepare``): T1w -> FLAIR alignment and the brain
    mask (MNI alignment), through the lesion or the brain's centre."""
    vols = {n: np.asanyarray(nib.load(workdir.volume_file(subject_dir, n)).dataobj).astype(np.float32)
            for n in ("t1", "flair", "brain", "lesion")}
    lesion = vols["lesion"] > 0.5
    point = np.argwhere(lesion).mean(axis=0) if lesion.any() else np.argwhere(vols["brain"] > 0).mean(axis=0)
    _qc_figure(vols["flair"], vols["t1"], vols["brain"], lesion, point, np.ones(3), (-1, 1), out_png, title, 80)


def native_qc(flair: nib.Nifti1Image, t1_on_flair: nib.Nifti1Image, brain: np.ndarray, out_png: Path,
              title: str, dpi: int = 150) -> None:
    """QC of one ``detect`` run in the subject's own FLAIR space: the brain mask it used and the T1w carried
    onto the FLAIR grid by the rigid registration, through the brain's centre."""
    canonical = nib.as_closest_canonical(flair)
    reorder = nib.orientations.ornt_transform(nib.io_orientation(flair.affine), nib.io_orientation(canonical.affine))

    def ras(data: np.ndarray) -> np.ndarray:
        return nib.orientations.apply_orientation(np.asarray(data, np.float32), reorder)

    f, t1, mask = np.asarray(canonical.dataobj, np.float32), ras(t1_on_flair.dataobj), ras(brain) > 0.5
    inside = f[mask] if mask.any() else f[f > 0]
    point = np.argwhere(mask).mean(axis=0) if mask.any() else (np.array(f.shape) - 1) / 2
    spacing = np.sqrt((canonical.affine[:3, :3] ** 2).sum(axis=0))
    _qc_figure(f, t1, mask, np.zeros(f.shape, bool), point, spacing,
               (0.0, float(np.percentile(inside, 99.5)) if inside.size else 1.0), out_png, title, dpi)
