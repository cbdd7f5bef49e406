"""Quality-control pictures of a preprocessed subject (on the template grid)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from pseudohealthy.io.atomic import write_with_atomic  # noqa: E402


def _center_slices(vol: np.ndarray, point: np.ndarray) -> list[np.ndarray]:
    i, j, k = (int(round(p)) for p in point)
    return [vol[:, :, k].T, vol[:, j, :].T, vol[i, :, :].T]


def registration_qc(subject_dir: Path, out_png: Path, title: str) -> None:
    """Row 1: FLAIR with the registered T1's edges (T1 -> FLAIR alignment).
    Row 2: FLAIR with the brain-mask outline (red; MNI alignment) and the lesion outline (yellow)."""
    vols = {n: np.asanyarray(nib.load(Path(subject_dir) / f"{n}.nii.gz").dataobj).astype(np.float32)
            for n in ("t1", "flair", "brain", "lesion")}
    lesion = vols["lesion"] > 0.5
    point = np.argwhere(lesion).mean(axis=0) if lesion.any() else np.argwhere(vols["brain"] > 0).mean(axis=0)
    flair = _center_slices(vols["flair"], point)
    t1 = _center_slices(vols["t1"], point)
    brain = _center_slices(vols["brain"], point)
    les = _center_slices(lesion.astype(np.float32), point)
    fig, axes = plt.subplots(2, 3, figsize=(7.5, 5.2), facecolor="black")
    for c in range(3):
        for r in range(2):
            axes[r, c].imshow(flair[c], cmap="gray", origin="lower", vmin=-1, vmax=1, interpolation="nearest")
            axes[r, c].set_axis_off()
        # T1 edges inside the brain only (the mask border would dominate otherwise).
        inner = ndi.binary_erosion(brain[c] > 0.5, iterations=2)
        grad = np.where(inner, np.hypot(*np.gradient(t1[c])), 0.0)
        if inner.any():
            axes[0, c].contour(grad, levels=[np.percentile(grad[inner], 80)], colors="cyan", linewidths=0.5)
        axes[1, c].contour(brain[c], levels=[0.5], colors="red", linewidths=0.8)
        if les[c].any():
            axes[1, c].contour(les[c], levels=[0.5], colors="yellow", linewidths=0.8)
    axes[0, 0].set_title("FLAIR + T1w edges", color="white", fontsize=9, loc="left")
    axes[1, 0].set_title("FLAIR + brain mask (red), lesion (yellow)", color="white", fontsize=9, loc="left")
    fig.suptitle(title, color="white", fontsize=10)
    fig.tight_layout()
    write_with_atomic(Path(out_png), lambda tmp: fig.savefig(tmp, dpi=80, facecolor="black", format="png"),
                      suffix=".png")
    plt.close(fig)
