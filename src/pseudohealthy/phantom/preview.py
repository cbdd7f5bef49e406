"""Preview pictures of a synthetic subject: T1w, FLAIR and FLAIR with the lesion outline; and, for the
realistic phantom, one panel per kind of confound where the truth puts it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from pseudohealthy.io.atomic import write_with_atomic  # noqa: E402
from pseudohealthy.phantom.artefacts import nonuniformity_at  # noqa: E402
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


_PLANE_OF = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}  # world axis of an axis code


def _slice(vol: np.ndarray, affine: np.ndarray, point_mm: np.ndarray, plane: int, half_mm: float | None = None
           ) -> tuple[np.ndarray, tuple[int, int], float]:
    """The slice through ``point_mm`` across world axis ``plane`` (2 axial, 1 coronal, 0 sagittal) of a
    RAS-canonical volume, display-oriented and cropped to ``half_mm`` around the point; also the point's
    pixel and the pixel aspect."""
    ijk = np.clip(np.rint(np.linalg.inv(affine) @ np.r_[point_mm, 1.0])[:3].astype(int), 0, np.array(vol.shape) - 1)
    axes = [a for a in range(3) if a != plane]
    view = np.take(vol, ijk[plane], axis=plane).T
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    at = [ijk[axes[0]], ijk[axes[1]]]
    if half_mm is not None:
        h = [int(half_mm / zooms[a]) for a in axes]
        lo = [max(at[k] - h[k], 0) for k in range(2)]
        view = view[lo[1]:at[1] + h[1] + 1, lo[0]:at[0] + h[0] + 1]
        at = [at[0] - lo[0], at[1] - lo[1]]
    return view, (at[0], at[1]), float(zooms[axes[1]] / zooms[axes[0]])


def _label(record: dict) -> str:
    kind = record["kind"]
    where = " ".join(str(record[k]).replace("_", " ") for k in ("region", "horn", "ventricle", "site", "hemisphere")
                     if k in record)
    if "flair_ratio" in record:
        how = f"FLAIR ×{record['flair_ratio']:.2f}"
    elif kind == "cortical_partial_volume":
        how = f"blur σ {record['sigma_mm']:.1f} mm"
    elif kind == "csf_inflow":
        how = f"{record['strength']:.1f}× cortex"
    elif kind == "motion_ringing":
        how = f"{record['shift_mm']:.1f} mm shift along {record['phase_direction']}"
    elif kind == "residual_nonuniformity":
        how = f"{len(record['bumps'])} bumps, ±2 % contours"
    else:
        how = ""
    return f"{kind.replace('_', ' ')}\n{where} {how}".strip()


def _strongest(records: list[dict]) -> list[dict]:
    """One record per kind (the strongest), scanner artefacts without a place included."""
    best: dict[str, dict] = {}
    for r in records:
        if r.get("strength", 0) >= best.get(r["kind"], {}).get("strength", -1):
            best[r["kind"]] = r
    return list(best.values())


def _panel(ax, vol: np.ndarray, affine: np.ndarray, record: dict, vmax: float, half_mm: float | None = 45.0) -> None:
    """One confound on one axes: a slice through its place, circled; the field as contours (non-uniformity);
    the plane along the phase-encoding axis, windowed low to show the ghosts (ringing)."""
    center = (affine @ np.r_[(np.array(vol.shape) - 1) / 2.0, 1.0])[:3]
    point = np.asarray(record.get("center_flair_world_mm", center))
    plane, window = 2, vmax
    if record["kind"] == "motion_ringing":
        plane, half_mm = (1 if _PLANE_OF[record["phase_direction"]] == 2 else 2), None
    elif record["kind"] == "residual_nonuniformity":
        half_mm = None
    view, at, aspect = _slice(vol, affine, point, plane, half_mm)
    ax.imshow(view, cmap="gray", origin="lower", vmin=0, vmax=window, interpolation="nearest", aspect=aspect)
    if record["kind"] == "residual_nonuniformity":
        full = np.indices(vol.shape[:2]).reshape(2, -1)
        k = int(np.clip(np.rint(np.linalg.inv(affine) @ np.r_[point, 1.0])[2], 0, vol.shape[2] - 1))
        world = affine @ np.vstack([full, np.full(full.shape[1], k), np.ones(full.shape[1])])
        field = nonuniformity_at(record, world[:3]).reshape(vol.shape[:2]).T
        ax.contour(field, levels=np.arange(0.86, 1.15, 0.02), cmap="coolwarm", linewidths=0.8)
    elif "center_flair_world_mm" in record:
        ax.add_patch(plt.Circle(at, 7.0 / np.sqrt((affine[:3, 0] ** 2).sum()), fill=False, color="yellow",
                                linewidth=0.9))
    ax.set_title(_label(record), color="white", fontsize=7)
    ax.set_axis_off()


def _save(fig, out_png: Path) -> Path:
    fig.tight_layout()
    write_with_atomic(Path(out_png), lambda tmp: fig.savefig(tmp, dpi=80, facecolor="black", format="png"),
                      suffix=".png")
    plt.close(fig)
    return Path(out_png)


def confound_preview(subject: dict, bids: Path, out_png: Path) -> Path | None:
    """A figure of a realistic subject's FLAIR with one panel per kind of normal variant and scanner
    artefact its truth records (the strongest of each kind, circled where the truth puts it). None for a
    legacy subject."""
    if "scanner" not in subject:
        return None
    anat, prefix = first_scan(bids, subject)
    flair, aff = _canonical(anat / f"{prefix}_acq-{subject['plan']['flair_acq']}_FLAIR.nii.gz")
    records = _strongest(subject["normal_variants"] + subject["scanner"]["scans"]["FLAIR"]["artefacts"])
    cols = min(len(records), 5)
    rows = -(-len(records) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), facecolor="black", squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    vmax = float(np.percentile(flair, 99.5))
    for ax, record in zip(axes.flat, records):
        _panel(ax, flair, aff, record, vmax)
    fig.suptitle(f"{subject['participant_id']}: normal variants and scanner artefacts on FLAIR "
                 f"({subject['scanner']['field_strength_t']} T)", color="white", fontsize=9)
    return _save(fig, out_png)


def confound_previews(truth: dict, out_dir: Path) -> list[Path]:
    """One confound figure per realistic subject of a generated dataset (none for a legacy dataset)."""
    bids = Path(truth["bids_dir"])
    written = [confound_preview(s, bids, Path(out_dir) / f"{s['participant_id']}_confounds.png")
               for s in truth["subjects"]]
    return [p for p in written if p is not None]
