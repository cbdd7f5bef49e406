"""The report: per unit its figures and an HTML page (overlays, the tables of clusters and candidates, a
three-view figure per region, quality control), and an index page of all units."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from pseudohealthy.anomaly.clusters import Cluster, relative_peak  # noqa: E402
from pseudohealthy.config import Config  # noqa: E402
from pseudohealthy.data.bids import SubjectInputs, unit_path  # noqa: E402
from pseudohealthy.data.qc import native_qc  # noqa: E402
from pseudohealthy.detect.derivatives import NativeFindings  # noqa: E402
from pseudohealthy.io.atomic import write_text_atomic, write_with_atomic  # noqa: E402
from pseudohealthy.models.card import card_summary  # noqa: E402

_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
        "img{max-width:100%}.note{color:#555}figure{margin:1em 0}figcaption{font-weight:bold}"
        ".warning{background:#fee;border:1px solid #c00;padding:6px;color:#900}")


def _canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    c = nib.as_closest_canonical(img)
    return np.asarray(c.dataobj, dtype=np.float32), c.affine


def write_subject_report(out_dir: Path, inputs: SubjectInputs, found: NativeFindings, flair: nib.Nifti1Image,
                         t1w: nib.Nifti1Image, brain_mask: str, classifier: str, threshold: float,
                         card: dict | None, cfg: Config) -> None:
    """The unit's report: OUT_DIR/<unit>.html and its figures in OUT_DIR/<unit path>/figures (the overview,
    a three-view figure per shown region, the brain mask and registration check). ``t1w``: the subject's
    T1w on its FLAIR grid; ``brain_mask``: where the brain mask came from; ``threshold``: the anomaly score
    at 0.5 on the probseg map."""
    pid = inputs.unit
    affine, clusters, candidates = found.affine, found.clusters, found.candidates
    figure_dir = out_dir / unit_path(pid) / "figures"
    truth = nib.load(inputs.lesion_mask) if inputs.lesion_mask else None
    images = {"pseudo": nib.Nifti1Image(found.pseudo, affine), "score": nib.Nifti1Image(found.score, affine),
              "labels": nib.Nifti1Image(found.labels, affine), "t1w": t1w}
    overlay_figure(flair, images["pseudo"], images["score"], images["labels"], clusters, truth,
                   figure_dir / f"{pid}_overlays.png", dpi=cfg.report.dpi)
    images["labels"] = nib.Nifti1Image(found.labels + found.candidate_labels, affine)  # outlines in the three views
    cluster_figures = _cluster_figures(pid, flair, images, truth, clusters, candidates, found.score, affine,
                                       figure_dir, cfg)
    native_qc(flair, images["t1w"], found.brain, figure_dir / f"{pid}_qc.png",
              f"{pid}: brain mask ({brain_mask}) and T1w -> FLAIR registration", cfg.report.dpi)
    info = {"FLAIR": inputs.flair.name, "T1w": inputs.t1w.name, "brain mask": brain_mask,
            "classifier's lobe prediction": classifier,
            "threshold (validation-chosen)": f"anomaly {threshold:.3f} (0.5 on the probseg map)",
            "clusters above threshold": len(clusters),
            "candidates below threshold": len(candidates),
            "pseudo-healthy draws per slice (confidence needs 2 or more)": found.samples}
    if inputs.notes:
        info["input notes"] = "; ".join(inputs.notes)
    if card:
        info["model"] = card_summary(card)
    synthetic = card and card["training_data"]["source"]["synthetic"]
    warning = ("This model was trained on synthetic phantom data only: its output on a real scan means "
               "nothing until it is retrained on real data." if synthetic else None)
    figures_rel = f"{unit_path(pid).as_posix()}/figures"
    subject_page(out_dir / f"{pid}.html", pid, f"{figures_rel}/{pid}_overlays.png", clusters + candidates, info,
                 cluster_figures, warning, qc_rel=f"{figures_rel}/{pid}_qc.png")


def _region_caption(c: Cluster) -> str:
    confidence = "" if c.confidence is None else f", confidence {c.confidence:.0%}"
    if c.above_threshold:
        return (f"cluster {c.rank}: {c.hemisphere} {c.lobe}, {c.volume_mm3:.0f} mm³, peak score {c.peak_score:.2f}"
                f"{confidence}")
    return (f"candidate {c.rank} (below threshold): {c.hemisphere} {c.lobe}, {c.volume_mm3:.0f} mm³, peak "
            f"{relative_peak(c):.0%} of the threshold{confidence}")


def _cluster_figures(pid: str, flair: nib.Nifti1Image, images: dict, truth, clusters: list[Cluster],
                     candidates: list[Cluster], score: np.ndarray, affine: np.ndarray, figures: Path,
                     cfg: Config) -> list[tuple[str, str]]:
    """One three-view PNG per shown cluster (the top ``report.clusters``) and per candidate below the
    threshold; with neither, one through the map's global maximum so a reader still sees where it peaks."""
    out = []
    targets = [(c.rank, c.peak_mm, _region_caption(c)) for c in clusters[:cfg.report.clusters] + candidates]
    if not targets:
        peak = np.unravel_index(int(np.argmax(score)), score.shape)
        peak_mm = [float(v) for v in affine[:3, :3] @ np.asarray(peak) + affine[:3, 3]]
        targets = [(None, peak_mm, f"no cluster above the threshold: the map's maximum ({score.max():.2f}, "
                                   "threshold 0.5)")]
    for rank, peak_mm, caption in targets:
        name = f"{pid}_cluster-{rank}.png" if rank else f"{pid}_maximum.png"
        cluster_figure(flair, images["t1w"], images["pseudo"], images["score"], images["labels"], truth, peak_mm,
                       rank, caption, figures / name, cfg.report.dpi,
                       display_floor=cfg.report.candidate_floor / (1 + cfg.report.candidate_floor))
        out.append((f"{unit_path(pid).as_posix()}/figures/{name}", caption))
    return out


def overlay_figure(flair: nib.Nifti1Image, pseudo: nib.Nifti1Image, score: nib.Nifti1Image,
                   clusters_img: nib.Nifti1Image, clusters: list[Cluster], truth: nib.Nifti1Image | None,
                   out_png: Path, max_rows: int = 3, display_floor: float = 0.4, dpi: int = 150) -> None:
    """Rows: the axial slices through the top clusters' peaks. Columns: FLAIR, pseudo-healthy FLAIR,
    anomaly map on FLAIR, cluster outlines (and the reference lesion mask in green when known)."""
    f, aff = _canonical(flair)
    p, _ = _canonical(pseudo)
    s, _ = _canonical(score)
    c, _ = _canonical(clusters_img)
    t = _canonical(truth)[0] if truth is not None else None
    inv = np.linalg.inv(aff)
    if clusters:
        zs = [int(round((inv @ np.r_[cl.peak_mm, 1.0])[2])) for cl in clusters[:max_rows]]
    else:
        zs = [f.shape[2] // 2]
    vmax = float(np.percentile(f[f > 0], 99.5)) if (f > 0).any() else 1.0
    smax = max(float(s.max()), 1e-6)
    fig, axes = plt.subplots(len(zs), 4, figsize=(10, 2.7 * len(zs)), squeeze=False, facecolor="black")
    titles = ["FLAIR", "pseudo-healthy FLAIR", "anomaly map", "clusters (rank)"]
    for r, z in enumerate(zs):
        z = int(np.clip(z, 0, f.shape[2] - 1))
        for col in range(4):
            ax = axes[r, col]
            base = p if col == 1 else f
            ax.imshow(base[:, :, z].T, cmap="gray", origin="lower", vmin=0, vmax=vmax)
            if col == 2:
                # probseg scale: 0.5 is the calibrated threshold; show from a little below it
                ax.imshow(np.ma.masked_less(s[:, :, z].T, display_floor), cmap="hot", origin="lower",
                          vmin=display_floor, vmax=max(smax, display_floor + 0.1), alpha=0.75)
            if col == 3:
                labels = c[:, :, z].T
                for k in np.unique(labels[labels > 0])[:5]:
                    ax.contour(labels == k, levels=[0.5], colors="red", linewidths=1.0)
                    yy, xx = np.argwhere(labels == k).mean(axis=0)
                    ax.text(xx, yy, str(int(k)), color="yellow", fontsize=9, ha="center", va="center")
                if t is not None and t[:, :, z].any():
                    ax.contour(t[:, :, z].T > 0.5, levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_axis_off()
            if col == 0 and r < len(clusters):
                cl = clusters[r]
                ax.text(2, f.shape[1] - 4, f"#{cl.rank} {cl.hemisphere} {cl.lobe}, {cl.volume_mm3:.0f} mm³",
                        color="yellow", fontsize=8, va="top")
            if r == 0:
                ax.set_title(titles[col], color="white", fontsize=9)
    fig.tight_layout()
    write_with_atomic(Path(out_png), lambda tmp: fig.savefig(tmp, dpi=dpi, facecolor="black", format="png"),
                      suffix=".png")
    plt.close(fig)


# Views through a point of a canonical (RAS) volume: (name, fixed axis, horizontal axis, vertical axis,
# letters at the left and right edges). Displayed in neurological convention: the patient's right on
# the right of the picture, anterior on the right of the sagittal view.
_VIEWS = (("axial", 2, 0, 1, ("L", "R")), ("coronal", 1, 0, 2, ("L", "R")), ("sagittal", 0, 1, 2, ("P", "A")))


def _cut(volume: np.ndarray, fixed: int, index: int) -> np.ndarray:
    """The 2D section of ``volume`` at ``index`` along axis ``fixed``, transposed for imshow(origin='lower')."""
    return np.take(volume, index, axis=fixed).T


def cluster_figure(flair: nib.Nifti1Image, t1w: nib.Nifti1Image, pseudo: nib.Nifti1Image,
                   score: nib.Nifti1Image, clusters_img: nib.Nifti1Image, truth: nib.Nifti1Image | None,
                   peak_mm: list[float], rank: int | None, title: str, out_png: Path, dpi: int = 150,
                   display_floor: float = 0.4) -> None:
    """Axial, coronal and sagittal sections through ``peak_mm`` (rows); FLAIR, T1w, pseudo-healthy FLAIR
    and the anomaly map with the cluster's outline (columns). Neurological convention, L/R marked."""
    f, aff = _canonical(flair)
    t1, _ = _canonical(t1w)
    p, _ = _canonical(pseudo)
    s, _ = _canonical(score)
    c, _ = _canonical(clusters_img)
    t = _canonical(truth)[0] if truth is not None else None
    peak = np.clip(np.round(np.linalg.inv(aff) @ np.r_[peak_mm, 1.0])[:3].astype(int), 0, np.array(f.shape) - 1)
    spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))

    def vmax(volume):
        inside = volume[volume > 0]
        return float(np.percentile(inside, 99.5)) if inside.size else 1.0

    scales = {"FLAIR": vmax(f), "T1w": vmax(t1), "pseudo-healthy FLAIR": vmax(f)}
    fig, axes = plt.subplots(3, 4, figsize=(11, 8.4), squeeze=False, facecolor="black")
    for row, (view, fixed, horizontal, vertical, (left, right)) in enumerate(_VIEWS):
        aspect = spacing[vertical] / spacing[horizontal]
        index = int(peak[fixed])
        for col, (name, volume) in enumerate((("FLAIR", f), ("T1w", t1), ("pseudo-healthy FLAIR", p),
                                              ("anomaly map", f))):
            ax = axes[row, col]
            ax.imshow(_cut(volume, fixed, index), cmap="gray", origin="lower", aspect=aspect, vmin=0,
                      vmax=scales.get(name, scales["FLAIR"]))
            if name == "anomaly map":
                ax.imshow(np.ma.masked_less(_cut(s, fixed, index), display_floor), cmap="hot", origin="lower",
                          aspect=aspect, vmin=display_floor, vmax=max(float(s.max()), display_floor + 0.1), alpha=0.75)
                if rank is not None and (_cut(c, fixed, index) == rank).any():
                    ax.contour(_cut(c, fixed, index) == rank, levels=[0.5], colors="cyan", linewidths=0.9)
                if t is not None and (_cut(t, fixed, index) > 0.5).any():
                    ax.contour(_cut(t, fixed, index) > 0.5, levels=[0.5], colors="lime", linewidths=0.8)
            ax.plot(peak[horizontal], peak[vertical], "+", color="cyan", markersize=9, markeredgewidth=0.8)
            ax.text(0.02, 0.5, left, transform=ax.transAxes, color="white", fontsize=9, va="center", ha="left")
            ax.text(0.98, 0.5, right, transform=ax.transAxes, color="white", fontsize=9, va="center", ha="right")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name, color="white", fontsize=10)
            if col == 0:
                ax.text(0.02, 0.98, view, transform=ax.transAxes, color="yellow", fontsize=9, va="top")
    fig.suptitle(title, color="white", fontsize=11)
    fig.tight_layout()
    write_with_atomic(Path(out_png), lambda tmp: fig.savefig(tmp, dpi=dpi, facecolor="black", format="png"),
                      suffix=".png")
    plt.close(fig)


def _coordinates(values: list[float] | None) -> str:
    return ", ".join(f"{v:.0f}" for v in values) if values else "n/a"


def _region_table(regions: list[Cluster], empty: str) -> str:
    if not regions:
        return f"<p>{empty}</p>"
    rows = "".join(
        f"<tr><td>{c.rank}</td><td>{c.peak_score:.3f}</td><td>{relative_peak(c):.0%}</td><td>{c.mean_score:.3f}</td>"
        f"<td>{'n/a' if c.confidence is None else f'{c.confidence:.0%}'}</td><td>{c.volume_mm3:.0f}</td>"
        f"<td>{c.hemisphere}</td><td>{c.lobe}</td><td>{_coordinates(c.peak_mm)}</td>"
        f"<td>{_coordinates(c.peak_mni)}</td></tr>"
        for c in regions[:20])
    return ('<table><tr><th>rank</th><th>peak score</th><th>peak / threshold</th><th>mean score</th>'
            '<th>confidence</th><th>volume mm³</th><th>hemisphere</th><th>lobe</th><th>peak mm (scanner RAS)</th>'
            '<th>peak mm (MNI152)</th></tr>' + rows + '</table>')


def subject_page(out_html: Path, participant_id: str, figure_rel: str, regions: list[Cluster], info: dict,
                 cluster_figures: list[tuple[str, str]] = (), warning: str | None = None,
                 qc_rel: str | None = None) -> None:
    """The subject's report: facts, the tables of clusters and of candidates below the threshold, one
    three-view figure per shown region (``cluster_figures``: (relative PNG path, caption)) and the overview."""
    facts = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in info.items())
    banner = f'<p class="warning">{html.escape(warning)}</p>' if warning else ""
    views = "".join(f'<figure><img src="{rel}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                    "</figcaption></figure>" for rel, caption in cluster_figures)
    table = _region_table([c for c in regions if c.above_threshold], "No cluster above the threshold.")
    qc = (f'<h2>Quality control: brain mask and registration</h2><img src="{qc_rel}" alt="quality control">'
          '<p class="note">Top row: the T1w carried onto the FLAIR by the rigid registration (its edges in cyan '
          'should follow the FLAIR\'s anatomy). Bottom row: the brain mask used (red); cortex outside it is not '
          'searched, skull or dura inside it can make false clusters.</p>') if qc_rel else ""
    below = _region_table([c for c in regions if not c.above_threshold],
                          "No candidate: nothing else in the map reaches the candidate floor.")
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{participant_id}</title>
<style>{_CSS}</style></head><body>
<h1>{participant_id}: suspicious regions</h1>
{banner}
<ul>{facts}</ul>
<h2>Clusters above the threshold (ranked by score)</h2>
{table}
<h2>Candidates below the threshold</h2>
<p class="note">The next strongest regions of the map, not reported as findings: a lesion that holds the map's
maximum but stays a little under the conservative threshold shows up here ("peak / threshold" under 100 %; a
region above 100 % passes the threshold over less than the minimum cluster volume).</p>
{below}
<p class="note">Scores are on the probseg scale s / (s + threshold): 0.5 is the threshold chosen on validation
subjects. Confidence: the share of the independent pseudo-healthy draws (diffusion.samples) in which the region
around the cluster's peak exceeds the threshold on its own; n/a with a single draw.</p>
<h2>Each cluster and candidate in three views</h2>
<p class="note">Neurological convention: the patient's left (L) is on the left of each picture; sagittal views
have anterior (A) on the right. Rows: axial, coronal, sagittal through the cluster's peak (+). Columns: FLAIR,
T1w (registered to the FLAIR), pseudo-healthy FLAIR, anomaly map from the candidate floor with the region's outline (cyan) and
the reference lesion mask (green), where the dataset has one.</p>
{views}
<h2>Overview (axial, through the top clusters)</h2>
<img src="{figure_rel}" alt="overlays">
{qc}
<p class="note">Anomaly score s = FLAIR brighter than its pseudo-healthy version (smoothed, standardised per slice).
Research software: not a medical device.</p>
<p><a href="index.html">all subjects</a></p></body></html>"""
    write_text_atomic(out_html, body)


def index_page(out_html: Path, entries: list[dict]) -> None:
    rows = "".join(
        f"<tr><td><a href='{e['participant_id']}.html'>{e['participant_id']}</a></td><td>{e['n_clusters']}</td>"
        f"<td>{e['top']}</td><td>{e['classifier']}</td></tr>" for e in sorted(entries, key=lambda e: e['participant_id']))
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>pseudohealthy report</title>
<style>{_CSS}</style></head><body><h1>FCD detection report</h1>
<table><tr><th>subject</th><th>clusters</th><th>top cluster</th><th>classifier's lobe</th></tr>{rows}</table>
</body></html>"""
    write_text_atomic(out_html, body)


def write_index(out_dir: Path, results: list[dict]) -> None:
    """OUT_DIR/index.html: this run's units (``results``) plus those of earlier runs into the same folder (by
    their pages)."""
    seen = {r["participant_id"]: r for r in results}
    for page in Path(out_dir).glob("sub-*.html"):
        pid = page.stem
        if pid not in seen:
            seen[pid] = {"participant_id": pid, "n_clusters": "see page", "top": "", "classifier": ""}
    index_page(out_dir / "index.html", list(seen.values()))
