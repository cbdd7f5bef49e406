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
from pseudohealthy.phantom.readback import first_scan  # noqa: E402


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


_FOCAL = ("punctate_wmh", "periventricular_cap", "csf_inflow", "cortical_partial_volume")


def _view_of(record: dict) -> tuple[int, float | None]:
    """The plane (world axis across it) and crop (half width, mm; None: whole slice) that show a confound
    as a reader would look for it: the cingulate on a paramedian sagittal, the mesial temporal lobe and the
    corticospinal tract on a coronal, ringing on a plane along the phase-encoding axis, others axial."""
    kind = record["kind"]
    if kind == "motion_ringing":
        return (1 if _PLANE_OF[record["phase_direction"]] == 2 else 2), None
    if kind == "residual_nonuniformity":
        return 2, None
    if kind == "regional_cortex" and record["region"] == "cingulate":
        return 0, 60.0
    if kind == "corticospinal_tract" or (kind == "regional_cortex" and record["region"] == "mesial_temporal"):
        return 1, 50.0
    return 2, 45.0


def _panel(ax, vol: np.ndarray, affine: np.ndarray, record: dict, vmax: float, marks: bool = True) -> None:
    """One confound on one axes: a slice through its place (focal ones circled, the non-uniformity's field
    as contours, unless not ``marks``); ringing on the plane along the phase-encoding axis."""
    center = (affine @ np.r_[(np.array(vol.shape) - 1) / 2.0, 1.0])[:3]
    point = np.asarray(record.get("center_flair_world_mm", center))
    plane, half_mm = _view_of(record)
    view, at, aspect = _slice(vol, affine, point, plane, half_mm)
    ax.imshow(view, cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest", aspect=aspect)
    if not marks:
        pass
    elif record["kind"] == "residual_nonuniformity":
        full = np.indices(vol.shape[:2]).reshape(2, -1)
        k = int(np.clip(np.rint(np.linalg.inv(affine) @ np.r_[point, 1.0])[2], 0, vol.shape[2] - 1))
        world = affine @ np.vstack([full, np.full(full.shape[1], k), np.ones(full.shape[1])])
        field = nonuniformity_at(record, world[:3]).reshape(vol.shape[:2]).T
        ax.contour(field, levels=np.arange(0.86, 1.15, 0.02), cmap="coolwarm", linewidths=0.8)
    elif record["kind"] in _FOCAL:
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


# ---- the gallery of docs/phantom.md -----------------------------------------------------------------------

_GALLERY_KINDS = {  # figure -> the record kinds it shows, and the scan
    "regional_cortex": (("regional_cortex",), "FLAIR"),
    "corticospinal_tract": (("corticospinal_tract",), "FLAIR"),
    "periventricular": (("periventricular_cap", "periventricular_band"), "FLAIR"),
    "punctate_wmh": (("punctate_wmh",), "FLAIR"),
    "cortical_partial_volume": (("cortical_partial_volume",), "FLAIR"),
    "csf_inflow": (("csf_inflow",), "FLAIR"),
    "residual_nonuniformity": (("residual_nonuniformity",), "FLAIR"),
    "motion_ringing": (("motion_ringing",), "FLAIR"),
}


def _comparison(with_path: Path, without_path: Path, records: list[dict], out_png: Path, title: str) -> Path:
    """Rows, one per record: the scan with the confound, without it, and their relative difference."""
    on, aff = _canonical(with_path)
    off, _ = _canonical(without_path)
    vmax = float(np.percentile(off, 99.5))
    fig, axes = plt.subplots(len(records), 3, figsize=(7.2, 2.5 * len(records)), facecolor="black", squeeze=False)
    for row, record in zip(axes, records):
        _panel(row[0], on, aff, record, vmax)
        _panel(row[1], off, aff, record, vmax, marks=False)
        row[1].set_title("without", color="white", fontsize=7)
        center = (aff @ np.r_[(np.array(on.shape) - 1) / 2.0, 1.0])[:3]
        point = np.asarray(record.get("center_flair_world_mm", center))
        plane, half = _view_of(record)
        a, _, aspect = _slice(on, aff, point, plane, half)
        b, _, _ = _slice(off, aff, point, plane, half)
        diff = np.where(b > 0.05 * vmax, a / np.maximum(b, 1e-6) - 1.0, (a - b) / vmax)
        span = 0.1 if record["kind"] == "residual_nonuniformity" else 0.25
        row[2].imshow(diff, cmap="bwr", origin="lower", vmin=-span, vmax=span, interpolation="nearest", aspect=aspect)
        row[2].set_title(f"with / without − 1 (±{span:.0%})", color="white", fontsize=7)
        row[2].set_axis_off()
    fig.suptitle(title, color="white", fontsize=9)
    return _save(fig, out_png)


def _lesion_figure(renders: list[tuple[dict, Path]], out_png: Path) -> Path:
    """Each lesion's T1w and FLAIR (axial, coronal) around it, outlined."""
    fig, axes = plt.subplots(len(renders), 4, figsize=(8.4, 2.4 * len(renders)), facecolor="black", squeeze=False)
    for row, (truth, bids) in zip(axes, renders):
        anat, prefix = first_scan(bids, truth)
        plan, lesion = truth["plan"], truth["lesion"]
        flair, f_aff = _canonical(anat / f"{prefix}_acq-{plan['flair_acq']}_FLAIR.nii.gz")
        t1, t_aff = _canonical(anat / f"{prefix}_acq-{plan['t1_acq']}_T1w.nii.gz")
        mask, m_aff = _canonical(anat / f"{prefix}_acq-{plan['mask_acq']}_FLAIR_roi.nii.gz")
        point = np.asarray(lesion["centroid_flair_world_mm"])
        motion = np.asarray(truth["geometry"]["t1w_world_to_flair_world"])
        point_t1 = (np.linalg.inv(motion) @ np.r_[point, 1.0])[:3]
        views = ((t1, t_aff, point_t1, 2, "T1w"), (flair, f_aff, point, 2, "FLAIR"),
                 (t1, t_aff, point_t1, 1, "T1w"), (flair, f_aff, point, 1, "FLAIR"))
        for k, (vol, aff, at, plane, name) in enumerate(views):
            view, _, aspect = _slice(vol, aff, at, plane, 40.0)
            row[k].imshow(view, cmap="gray", origin="lower", vmin=0, vmax=np.percentile(vol, 99.5),
                          interpolation="nearest", aspect=aspect)
            if name == "FLAIR":
                outline, _, _ = _slice(mask, m_aff, at, plane, 40.0)
                if outline.any():
                    row[k].contour(outline, levels=[0.5], colors="red", linewidths=0.6)
            row[k].set_axis_off()
        row[0].set_title(f"{plan['histopathology']}, {lesion['volume_mm3'] / 1000:.1f} cm³, FLAIR contrast "
                         f"{lesion['flair_contrast_ratio']:.2f}" + (", transmantle" if plan["lesion"]["transmantle"]
                                                                    else ""), color="white", fontsize=8, loc="left")
    return _save(fig, out_png)


def confound_gallery(out_dir: Path, work_dir: Path, seed: int = 7) -> list[Path]:
    """The figures of docs/phantom.md: one patient rendered with and without each confound (the same noise
    and geometry), at 1.5 and 3 T, and two lesions of the FCD range. Writes PNGs ``phantom_<kind>.png``."""
    from pseudohealthy.phantom.dataset import plan_dataset
    from pseudohealthy.phantom.realism import only
    from pseudohealthy.phantom.subject import render_subject

    work_dir, out_dir = Path(work_dir), Path(out_dir)
    forced = ("periventricular", "punctate_wmh", "csf_inflow", "motion_ringing")
    settings = {"none": only(()), "field": only(("field_strength",), ("field_strength",))}
    for figure in _GALLERY_KINDS:
        settings[figure] = only((figure,), tuple(c for c in forced if c == figure))
    renders = {}
    for name, realism in settings.items():
        plan = plan_dataset(2, 1, seed=seed, realism=realism)[0]
        renders[name] = (render_subject(plan, seed, work_dir / name, work_dir / f"{name}_truth"), work_dir / name)

    def scan(name: str, suffix: str = "FLAIR") -> Path:
        truth, bids = renders[name]
        anat, prefix = first_scan(bids, truth)
        acq = truth["plan"]["flair_acq" if suffix == "FLAIR" else "t1_acq"]
        return anat / f"{prefix}_acq-{acq}_{suffix}.nii.gz"

    written = []
    for figure, (kinds, _) in _GALLERY_KINDS.items():
        truth = renders[figure][0]
        records = [r for r in truth["normal_variants"] + truth["scanner"]["scans"]["FLAIR"]["artefacts"]
                   if r["kind"] in kinds]
        chosen = _strongest(records)
        if figure == "regional_cortex":
            chosen = [max((r for r in records if r["region"] == region), key=lambda r: r["strength"])
                      for region in ("mesial_temporal", "insula", "cingulate")]
        written.append(_comparison(scan(figure), scan("none"), chosen, out_dir / f"phantom_{figure}.png",
                                   figure.replace("_", " ")))
    # Field strength: the same head at 3 T and 1.5 T, T1w and FLAIR.
    fig, axes = plt.subplots(2, 2, figsize=(6.0, 6.0), facecolor="black")
    for col, (name, tesla) in enumerate((("none", "3 T"), ("field", "1.5 T"))):
        for row, suffix in enumerate(("T1w", "FLAIR")):
            vol, aff = _canonical(scan(name, suffix))
            center = (aff @ np.r_[(np.array(vol.shape) - 1) / 2.0, 1.0])[:3]
            view, _, aspect = _slice(vol, aff, center, 2, 70.0)
            axes[row, col].imshow(view, cmap="gray", origin="lower", vmin=0, vmax=np.percentile(vol, 99.5),
                                  interpolation="nearest", aspect=aspect)
            axes[row, col].set_title(f"{suffix}, {tesla}", color="white", fontsize=8)
            axes[row, col].set_axis_off()
    fig.suptitle("field strength: contrast and noise", color="white", fontsize=9)
    written.append(_save(fig, out_dir / "phantom_field_strength.png"))
    # The FCD range: the demo phantom's faint and conspicuous test lesions, with every confound.
    plans = [p for p in plan_dataset(8, 8, seed=0) if p.split == "test"]
    picks = [min(plans, key=lambda p: p.lesion.flair_ratio), max(plans, key=lambda p: p.lesion.flair_ratio)]
    lesions = [(render_subject(p, 0, work_dir / "fcd", work_dir / "fcd_truth"), work_dir / "fcd") for p in picks]
    written.append(_lesion_figure(lesions, out_dir / "phantom_fcd_range.png"))
    return written
