"""Preview pictures of a synthetic subject: T1w, FLAIR and FLAIR with the lesion outline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from pseudohealthy.io.atomic import write_with_atomic  # noqa: E402
from pseudohealthy.phantom.subject import first_scan  # noqa: E402


def _canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def _views(vol: np.ndarray, affine: np.ndarray, point_mm: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices (RAS-canonical volume) through ``point_mm``, display-oriented."""
    ijk = np.rint(np.linalg.inv(affine) @ np.r_[point_mm, 1.0])[:3].astype(int)
    ijk = np.clip(ijk, 0, np.array(vol.shape) - 1)
    return [vol[:, :, ijk[2]].T, vol[:, ijk[1], :].T, vol[ijk[0], :, :].T]


def _aspects(affine: np.ndarray) -> list[float]:
    z = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return [z[1] / z[0], z[2] / z[0], z[2] / z[1]]


def subject_preview(t1_path: Path, flair_path: Path, mask_path: Path | None, point_flair_mm: np.ndarray,
                    flair_to_t1_world: np.ndarray, out_png: Path, title: str) -> None:
    """Write a 3x3 figure: rows T1w, FLAIR, FLAIR + lesion outline; columns axial, coronal, sagittal."""
    t1, t1_aff = _canonical(t1_path)
    flair, fl_aff = _canonical(flair_path)
    point_t1 = (flair_to_t1_world @ np.r_[point_flair_mm, 1.0])[:3]
    rows = [("T1w", _views(t1, t1_aff, point_t1), _aspects(t1_aff), None)]
    mask_views = None
    if mask_path is not None:
        mask, m_aff = _canonical(mask_path)
        mask_views = _views(mask, m_aff, point_flair_mm)
    fl_views = _views(flair, fl_aff, point_flair_mm)
    rows.append(("FLAIR", fl_views, _aspects(fl_aff), None))
    rows.append(("FLAIR + lesion mask" if mask_views else "FLAIR", fl_views, _aspects(fl_aff), mask_views))
    fig, axes = plt.subplots(3, 3, figsize=(7.5, 7.5), facecolor="black")
    for r, (label, views, aspects, overlay) in enumerate(rows):
        vmax = np.percentile(np.concatenate([v.ravel() for v in views]), 99.5)
        for c, view in enumerate(views):
            ax = axes[r, c]
            ax.imshow(view, cmap="gray", origin="lower", vmin=0, vmax=vmax, aspect=aspects[c],
                      interpolation="nearest")
            if overlay is not None and overlay[c].any():
                ax.contour(overlay[c], levels=[0.5], colors="red", linewidths=0.8)
            ax.set_axis_off()
        axes[r, 0].set_title(label, color="white", fontsize=9, loc="left")
    fig.suptitle(title, color="white", fontsize=10)
    fig.tight_layout()
    write_with_atomic(Path(out_png), lambda tmp: fig.savefig(tmp, dpi=80, facecolor="black", format="png"),
                      suffix=".png")
    plt.close(fig)


def dataset_previews(truth: dict, out_dir: Path) -> list[Path]:
    """One preview PNG per subject of a generated dataset (``truth`` from ``generate_dataset``)."""
    bids = Path(truth["bids_dir"])
    written = []
    for subject in truth["subjects"]:
        pid, plan = subject["participant_id"], subject["plan"]
        anat, prefix = first_scan(bids, subject)
        flair = anat / f"{prefix}_acq-{plan['flair_acq']}_FLAIR.nii.gz"
        lesion = subject.get("lesion")
        if lesion:
            point = np.asarray(lesion["centroid_flair_world_mm"])
            mask = anat / f"{prefix}_acq-{plan['mask_acq']}_FLAIR_roi.nii.gz"
        else:
            img = nib.load(flair)
            point = (img.affine @ np.r_[(np.array(img.shape) - 1) / 2.0, 1.0])[:3]
            mask = None
        motion = np.asarray(subject["geometry"]["t1w_world_to_flair_world"])
        title = f"{pid} ({plan['group']}" + (f", {plan['lesion']['hemisphere']} {','.join(plan['lesion']['lobes'])}"
                                              if lesion else "") + ")"
        out = out_dir / f"{pid}_preview.png"
        subject_preview(anat / f"{prefix}_acq-{plan['t1_acq']}_T1w.nii.gz", flair, mask, point, np.linalg.inv(motion),
                        out, title)
        written.append(out)
    return written
