"""The benchmark's outputs: ``results.csv``, ``results.json``, ``results.md`` (the table) and figures
(``figures/pr_curves.png``, ``figures/overlays.png``), every row with its provenance."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pseudohealthy.config import load_work_config  # noqa: E402
from pseudohealthy.evaluation.metrics import k_pixels_for  # noqa: E402
from pseudohealthy.evaluation.scores import CI_METRICS, RECALL_K  # noqa: E402
from pseudohealthy.io.atomic import write_json_atomic, write_text_atomic, write_with_atomic  # noqa: E402

# column -> header; CI columns get "[low, high]" in the markdown table
COLUMNS = {"auprc": "AUPRC", "auroc": "AUROC", "r@5": "R@5", "r@10": "R@10", "dice_val": "Dice (val thr)",
           "dice_oracle": "Dice (oracle)", "top1": "top-1", "top3": "top-3", "fp_per_patient": "FP/patient",
           "fp_per_control": "FP/control", "specificity": "specificity", "peak_distance_mm": "peak dist (mm)",
           "lobe_accuracy": "lobe acc", "classifier_lobe_accuracy": "classifier lobe acc"}
PROVENANCE = ("config", "config_sha256", "checkpoints", "split", "split_sha256", "seed", "commit", "version")


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


def _fmt(value: float | None) -> str:
    return f"{value:.3f}" if _finite(value) else "n/a"


def _json_safe(obj):
    """NaN is not JSON: write null instead."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        m, p = r["metrics"], r["provenance"]
        row = {"method": r["name"], "role": r["role"], "title": r["title"], "patients": m["patients"],
               "controls": m["controls"], "lesion_slices": m["lesion_slices"]}
        for key in COLUMNS:
            row[key] = m[key]
            if key in CI_METRICS:
                row[f"{key}_ci_low"], row[f"{key}_ci_high"] = m[f"{key}_ci"]
        row.update({k: (json.dumps(p[k], sort_keys=True) if isinstance(p[k], dict) else p[k]) for k in PROVENANCE})
        rows.append(row)
    return rows


def markdown_table(results: list[dict], voxel_mm: float) -> str:
    header = ["method", *COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        m = r["metrics"]
        cells = [f"{r['title']} (`{r['name']}`)"]
        for key in COLUMNS:
            cell = _fmt(m[key])
            if key in CI_METRICS and _finite(m[key]):
                cell += f" [{_fmt(m[key + '_ci'][0])}, {_fmt(m[key + '_ci'][1])}]"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    first = results[0]["metrics"] if results else {"patients": 0, "controls": 0, "lesion_slices": 0}
    ks = ", ".join(f"k = {k} → {k_pixels_for(k, voxel_mm):.2f} px" for k in RECALL_K)
    lines += ["", f"Test set: {first['patients']} patients ({first['lesion_slices']} lesion slices), "
              f"{first['controls']} controls. Thresholds chosen on the validation subjects; \"Dice (oracle)\" "
              "uses the best threshold on the test set itself (the paper's reporting, an upper bound). "
              f"R@k: k in the paper's 1 mm pixels, scaled to this grid's {voxel_mm:g} mm pixels ({ks}). "
              "[low, high]: 95 % bootstrap CI over test subjects. Cluster metrics on the template grid."]
    return "\n".join(lines) + "\n"


def _pr_figure(results: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for r in results:
        curve = r["pr_curve"]
        if curve["recall"]:
            style = "-" if r["role"] == "method" else ("--" if r["role"] == "ablation" else ":")
            ax.plot(curve["recall"], curve["precision"], style, lw=2 if r["role"] == "method" else 1.2,
                    label=f"{r['name']} (AP {r['metrics']['auprc']:.3f})")
    ax.set_xlabel("recall (lesion voxels)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("pixel precision-recall, test patients")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    plt.close(fig)


def _overlay_figure(results: list[dict], out_dir: Path, path: Path) -> None:
    examples = [(r, np.load(out_dir / "methods" / f"{r['name']}_example.npz")) for r in results]
    if not examples:
        return
    n = len(examples) + 1
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    first = examples[0][1]
    panels = [("FLAIR + lesion", None, first)] + [(r["name"], r, ex) for r, ex in examples]
    for ax, (title, r, ex) in zip(axes.ravel(), panels):
        ax.imshow(np.rot90(ex["flair"]), cmap="gray")
        if r is not None:  # the map relative to the method's own threshold; ≥ 1 is above it
            relative = np.where(ex["brain"], ex["score"] / max(float(ex["threshold"]), 1e-12), np.nan)
            shown = np.ma.masked_where(~(relative >= 0.5), relative)
            ax.imshow(np.rot90(shown), cmap="hot", vmin=0.5, vmax=1.5, alpha=0.75)
        ax.contour(np.rot90(ex["lesion"]).astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    ex = results[0]["example"]
    fig.suptitle(f"{ex['participant_id']}, axial slice {ex['z']}: map / threshold (0.5–1.5), lesion in cyan",
                 fontsize=9)
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), suffix=".png")
    plt.close(fig)


def write_report(results: list[dict], out_dir: Path, work_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    voxel_mm = load_work_config(work_dir).data.template_voxel_mm
    rows = _rows(results)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json", "markdown": out_dir / "results.md",
             "pr_curves": out_dir / "figures" / "pr_curves.png", "overlays": out_dir / "figures" / "overlays.png"}
    write_text_atomic(paths["csv"], buffer.getvalue())
    write_json_atomic(paths["json"], _json_safe({
        "work_dir": str(Path(work_dir).resolve()), "voxel_mm": voxel_mm,
        "methods": [{k: v for k, v in r.items() if k != "pr_curve"} for r in results]}))
    write_text_atomic(paths["markdown"], markdown_table(results, voxel_mm))
    paths["pr_curves"].parent.mkdir(parents=True, exist_ok=True)
    _pr_figure(results, paths["pr_curves"])
    _overlay_figure(results, out_dir, paths["overlays"])
    return paths
