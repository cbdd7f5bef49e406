"""The benchmark's outputs: ``results.csv``, ``results.json``, ``results.md`` (the tables, with ours against
each method paired over the same subjects and seeds) and figures
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
from pseudohealthy.evaluation.native_scores import OutputScore, load_scores, summarise_outputs  # noqa: E402
from pseudohealthy.io.atomic import write_json_atomic, write_text_atomic, write_with_atomic  # noqa: E402
from pseudohealthy.metrics import paired_difference_cis  # noqa: E402
from pseudohealthy.provenance import source_commit  # noqa: E402

# figure -> header. Native: from detect's outputs, mean ± seed SD [95 % CI over subjects and seeds].
NATIVE_COLUMNS = {"native_auprc": "AUPRC (native)", "ranked_top1": "top-1 (ranked list)",
                  "ranked_top3": "top-3 (ranked list)", "detected": "detected (above thr)",
                  "fp_clusters_per_control": "FP clusters/control", "false_clusters_per_patient": "false clusters/patient",
                  "dice": "Dice (native)"}
WITH_CI = ("native_auprc", "ranked_top1", "detected")
# Template grid, same maps: mean ± seed SD.
TEMPLATE_COLUMNS = {"template_auprc": "AUPRC (template)", "template_r@5": "R@5", "template_dice_val": "Dice (val thr)",
                    "template_dice_oracle": "Dice (oracle)"}
STRATUM_FIGURES = ("ranked_top1", "ranked_top3", "detected", "native_auprc")
# Ours minus each other method, paired over the same test units and seeds.
PAIRED_FIGURES = {"native_auprc": "AUPRC (native)", "ranked_top1": "top-1 (ranked list)",
                  "ranked_top3": "top-3 (ranked list)", "detected": "detected (above thr)",
                  "fp_clusters_per_control": "FP clusters/control"}
REFERENCE_METHOD = "full"
SMALL_LESIONS = "< 1 cm³"  # the size stratum the small-lesion target is read from (``native_scores.SIZE_STRATA``)
# What `full` must reach for the detector to be worth a clinician's time (the project's acceptance targets):
# (label, where the figure is read, at least / at most, bound). Read from the tables above, never tuned to them.
TARGETS = (("lesion in the ranked top-3", ("metrics", "ranked_top3"), ">=", 0.80),
           ("lesion first in the ranked list", ("metrics", "ranked_top1"), ">=", 0.60),
           (f"lesions {SMALL_LESIONS} in the ranked top-3", ("strata", "size", SMALL_LESIONS, "ranked_top3"), ">=",
            0.50),
           ("false-positive clusters per test control (validation threshold)",
            ("metrics", "fp_clusters_per_control"), "<=", 0.50))
# Ahead of these references with the paired 95 % CI above 0, in each of these figures.
TARGET_REFERENCES = ("flair_zscore", "control_zscore")
TARGET_PAIRED = ("native_auprc", "ranked_top3")
PROVENANCE = ("config", "config_sha256", "checkpoints", "split", "split_sha256", "seeds", "commit", "code_sha256",
              "version", "computed_by", "machines", "finished", "seconds")


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


def _fmt(value: float | None) -> str:
    return f"{value:.3f}" if _finite(value) else "n/a"


def json_safe(obj):
    """NaN is not JSON: write null instead."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def nan_for_null(obj):
    """The inverse of ``json_safe`` for figures read back from JSON: null is NaN again."""
    if isinstance(obj, dict):
        return {k: nan_for_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_for_null(v) for v in obj]
    return float("nan") if obj is None else obj


def _rows(results: list[dict], seconds: dict[str, float | None]) -> list[dict]:
    rows = []
    for r in results:
        m, p = r["metrics"], r["provenance"]
        row = {"method": r["name"], "role": r["role"], "title": r["title"], "patients": m["patients"],
               "controls": m["controls"], "chosen": r["grid"]["chosen"],
               "seconds_per_test_subject": seconds.get(r["name"])}
        for key in NATIVE_COLUMNS:
            row[key], row[f"{key}_sd"] = m[key]["mean"], m[key]["sd"]
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = m[key]["ci"]
        for key in TEMPLATE_COLUMNS:
            row[key], row[f"{key}_sd"] = m[key]["mean"], m[key]["sd"]
        row.update({k: (json.dumps(p.get(k), sort_keys=True) if isinstance(p.get(k), dict | list) else p.get(k))
                    for k in PROVENANCE})  # results stored before a key was kept have none
        rows.append(row)
    return rows


def _cell(figure: dict, ci: bool) -> str:
    if not _finite(figure["mean"]):
        return "n/a"
    cell = f"{figure['mean']:.3f} ± {figure['sd']:.3f}"
    if ci and "ci" in figure:
        cell += f" [{_fmt(figure['ci'][0])}, {_fmt(figure['ci'][1])}]"
    return cell


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds / 60:.0f} min"


def provenance_note(results: list[dict], written_by: str) -> str:
    """Which commits and machines computed the rows, when the last test run finished, the recorded compute time:
    what a reader needs to trust a table assembled over several sittings."""
    if not results:
        return ""
    prov = [r["provenance"] for r in results]
    commits = sorted({c[:7] for p in prov for c in p.get("computed_by", [p["commit"]])})
    digests = sorted({p["code_sha256"][:12] for p in prov})
    machines = sorted({m for p in prov for m in p.get("machines", [])})
    finished = max((p["finished"] for p in prov if p.get("finished")), default=None)
    sweep = sum((p.get("seconds") or {}).get("sweep") or 0 for p in prov)
    seeds = sum((p.get("seconds") or {}).get("seeds") or 0 for p in prov)
    untimed = [r["name"] for r, p in zip(results, prov) if not (p.get("seconds") or {}).get("seeds")]
    parts = [f"Computed by commit{'s' if len(commits) > 1 else ''} {', '.join(commits)} (rows assembled by code "
             f"digest {', '.join(digests)})",
             f"on {', '.join(machines)}" if machines else "machine not recorded"]
    if finished:
        parts.append(f"last test run finished {finished}")
    if sweep or seeds:
        parts.append(f"recorded compute time: sweeps {_hours(sweep)}, test runs {_hours(seeds)} (training not "
                     "included" + (f"; not recorded for {', '.join(untimed)}" if untimed else "") + ")")
    return "; ".join(parts) + f". Table written by commit {written_by[:7]}.\n"


def _record_path(out_dir: Path, name: str, seed: int) -> Path:
    """Where the benchmark stored one (method, seed) test run (``evaluation.benchmark.run_method``)."""
    return Path(out_dir) / "methods" / name / f"seed-{seed}.json"


def seconds_per_subject(out_dir: Path, result: dict) -> float | None:
    """Seconds per test unit of the method's test runs with the tune seeds, mean over those seeds: their
    validation threshold comes from the sweep (``tune`` returns it), so the time is the test units' detection,
    written derivatives and scoring alone. None where no such run recorded its time."""
    per_unit = []
    for seed in sorted(set(result["grid"].get("tune_seeds", [])) & set(result["seeds"])):
        path = _record_path(out_dir, result["name"], seed)
        record = json.loads(path.read_text()) if path.is_file() else {}
        if record.get("seconds") and record.get("per_subject"):
            per_unit.append(record["seconds"] / len(record["per_subject"]))
    return float(np.mean(per_unit)) if per_unit else None


def markdown_table(results: list[dict], voxel_mm: float, seconds: dict[str, float | None] | None = None
                   ) -> str:
    """Three tables: the comparison, detection by conspicuity stratum, and each method's validation sweep.
    ``seconds``: per method, seconds per test subject (``seconds_per_subject``)."""
    seconds = seconds or {}
    header = ["method", *NATIVE_COLUMNS.values(), *TEMPLATE_COLUMNS.values(), "s / test subject"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        m = r["metrics"]
        cells = [f"{r['title']} (`{r['name']}`)"]
        cells += [_cell(m[key], key in WITH_CI) for key in NATIVE_COLUMNS]
        cells += [_cell(m[key], False) for key in TEMPLATE_COLUMNS]
        cells.append(f"{seconds[r['name']]:.0f}" if _finite(seconds.get(r["name"])) else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    first = results[0] if results else {"metrics": {"patients": 0, "controls": 0}, "seeds": []}
    lines += ["", f"Test set: {first['metrics']['patients']} patients, {first['metrics']['controls']} controls; "
              f"seeds {', '.join(str(s) for s in first['seeds'])}. Mean ± SD over seeds [95 % bootstrap CI over "
              "subjects and seeds]. Native figures are read from the outputs `detect` writes (FLAIR space): "
              "a region finds the lesion when its peak lies within 10 mm of it; top-k (ranked list): among the "
              "first k regions of the clusters TSV (clusters, then candidates below the threshold); detected: "
              "by a cluster above the validation-chosen threshold. Template figures come from the same maps on the "
              f"{voxel_mm:g} mm template grid; \"Dice (oracle)\" uses the best threshold on the test set itself "
              "(an upper bound), on the same voxels and threshold grid as the validation threshold. s / test subject: "
              "wall-clock seconds of a test run (detection, derivatives, scoring) per test subject, on the machine "
              "named above, with the tune seed, whose validation threshold the sweep had already chosen.", ""]
    strata = [(kind, name) for kind in ("size", "contrast")
              for name in dict.fromkeys(n for r in results for n in r["strata"][kind])]
    lines += ["| method | " + " | ".join(f"{name} (n)" for _, name in strata) + " |", "|" + "---|" * (len(strata) + 1)]
    for r in results:
        cells = []
        for kind, name in strata:
            s = r["strata"][kind].get(name)
            cells.append("n/a" if s is None else " / ".join(_fmt(s[k]) for k in STRATUM_FIGURES) +
                         f" ({s['patients']})")
        lines.append(f"| `{r['name']}` | " + " | ".join(cells) + " |")
    lines += ["", "By conspicuity (lesion volume; FLAIR contrast ratio of lesion to a surrounding shell): "
              "top-1 / top-3 in the ranked list / detected above threshold / native AUPRC, pooled over seeds; "
              "n = distinct patients.",
              "", "| method | grid (validation only) | values from | chosen | validation AUPRC of the chosen point |",
              "|---|---|---|---|---|"]
    for r in results:
        g = r["grid"]
        chosen = next((p for p in g["points"] if p["point"] == g["chosen"]), None)
        lines.append(f"| `{r['name']}` | {'; '.join(g['axes']) or '—'} | {g['source'] or '—'} | "
                     f"{g['chosen'] or 'preset'} | {_fmt(chosen['val_auprc_mean']) if chosen else 'n/a'} |")
    return "\n".join(lines) + "\n"


def _stored_runs(out_dir: Path, name: str, seeds: list[int]) -> list[list[OutputScore]]:
    runs = []
    for seed in seeds:
        path = _record_path(out_dir, name, seed)
        record = json.loads(path.read_text())
        runs.append(load_scores(record["per_subject"], path.with_name(f"seed-{seed}_hist.npz")))
    return runs


def paired_comparisons(results: list[dict], out_dir: Path, n_resamples: int = 1000) -> list[dict]:
    """``full`` minus each other method on the same test units and seeds: the difference of the table's means
    and its paired 95 % CI over subjects and seeds (``metrics.paired_difference_cis``), from the stored runs.
    Empty without ``full`` or when the seeds differ."""
    ours = next((r for r in results if r["name"] == REFERENCE_METHOD), None)
    if ours is None:
        return []
    ours_runs = _stored_runs(out_dir, ours["name"], ours["seeds"])
    out = []
    for r in results:
        if r is ours or r["seeds"] != ours["seeds"]:
            continue
        cis = paired_difference_cis(ours_runs, _stored_runs(out_dir, r["name"], r["seeds"]), summarise_outputs,
                                    n_resamples)
        out.append({"method": r["name"], "versus": ours["name"], **{
            key: {"difference": ours["metrics"][key]["mean"] - r["metrics"][key]["mean"],
                  "ci": list(cis.get(key, (float("nan"), float("nan"))))} for key in PAIRED_FIGURES}})
    return out


def _signed(value: float | None) -> str:
    return f"{value:+.3f}" if _finite(value) else "n/a"


def paired_table(comparisons: list[dict]) -> str:
    if not comparisons:
        return ""
    versus = comparisons[0]["versus"]
    lines = [f"| `{versus}` minus | " + " | ".join(PAIRED_FIGURES.values()) + " |",
             "|" + "---|" * (len(PAIRED_FIGURES) + 1)]
    for c in comparisons:
        lines.append(f"| `{c['method']}` | " + " | ".join(
            f"{_signed(c[k]['difference'])} [{_signed(c[k]['ci'][0])}, {_signed(c[k]['ci'][1])}]"
            for k in PAIRED_FIGURES) + " |")
    lines += ["", f"Ours (`{versus}`) against each method on the same test subjects and seeds: difference of the "
              "means above [paired 95 % bootstrap CI over subjects and seeds]. Higher is better for ours except FP "
              "clusters per control (lower is better); a CI that contains 0 leaves the order open."]
    return "\n".join(lines) + "\n"


def _target_figure(result: dict, where: tuple[str, ...]) -> float | None:
    value = result
    for key in where:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    value = value["mean"] if isinstance(value, dict) else value  # metrics: mean over seeds; strata: pooled
    return float(value) if _finite(value) else None


def target_checks(results: list[dict], comparisons: list[dict]) -> list[dict]:
    """``full`` against ``TARGETS`` and against each of ``TARGET_REFERENCES`` (paired CI of the difference above
    0 in each of ``TARGET_PAIRED``): one row per target with the figure, the bound and ``met`` (True, False, or
    None where the figure was not measured: a missing row, an empty stratum). Empty without ``full``."""
    ours = next((r for r in results if r["name"] == REFERENCE_METHOD), None)
    if ours is None:
        return []
    checks = []
    for label, where, sense, bound in TARGETS:
        value = _target_figure(ours, where)
        # shares averaged over seeds land a rounding error off a bound they meet (mean of 0.4, 1, 1)
        met = None if value is None else (value >= bound - 1e-9 if sense == ">=" else value <= bound + 1e-9)
        checks.append({"target": label, "value": value, "bound": f"{'≥' if sense == '>=' else '≤'} {bound:g}",
                       "met": met})
    by_method = {c["method"]: c for c in comparisons}
    for reference in TARGET_REFERENCES:
        for key in TARGET_PAIRED:
            c = by_method.get(reference, {}).get(key)
            low = c["ci"][0] if c else None
            checks.append({"target": f"ahead of `{reference}` in {PAIRED_FIGURES[key]}",
                           "value": c["difference"] if c else None, "ci": c["ci"] if c else None,
                           "bound": "paired CI above 0", "met": None if not _finite(low) else bool(low > 0)})
    return checks


def targets_table(checks: list[dict]) -> str:
    if not checks:
        return ""
    lines = [f"| target for `{REFERENCE_METHOD}` | measured | bound | met |", "|---|---|---|---|"]
    for c in checks:
        measured = _fmt(c["value"]) if c.get("ci") is None else \
            f"{_signed(c['value'])} [{_signed(c['ci'][0])}, {_signed(c['ci'][1])}]"
        met = {True: "yes", False: "no", None: "not measured"}[c["met"]]
        lines.append(f"| {c['target']} | {measured} | {c['bound']} | {met} |")
    lines += ["", "The project's targets for a detector worth a clinician's time, read from the tables above: "
              "shares of test patients (mean over seeds; the small lesions pooled over seeds), false clusters per "
              "test control at the validation threshold, and the paired differences against the FLAIR references."]
    return "\n".join(lines) + "\n"


def _pr_figure(results: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for r in results:
        curve = r["pr_curve"]
        if curve["recall"]:
            style = {"method": "-", "ablation": "--", "option": "-."}.get(r["role"], ":")
            ax.plot(curve["recall"], curve["precision"], style, lw=2 if r["role"] == "method" else 1.2,
                    label=f"{r['name']} (AP {r['metrics']['native_auprc']['mean']:.3f})")
    ax.set_xlabel("recall (lesion voxels, native FLAIR space)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("pixel precision-recall from detect's outputs, test patients, all seeds")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    plt.close(fig)


def _overlay_figure(results: list[dict], out_dir: Path, path: Path) -> None:
    examples = [(r, np.load(out_dir / "methods" / r["name"] / "example.npz")) for r in results]
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
    # room for the titles of the lower rows, and a band of about 0.4 inch above the first row for the suptitle
    fig.tight_layout(h_pad=1.5, rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), suffix=".png")
    plt.close(fig)


def write_report(results: list[dict], out_dir: Path, work_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    voxel_mm = load_work_config(work_dir).data.template_voxel_mm
    seconds = {r["name"]: seconds_per_subject(out_dir, r) for r in results}
    rows = _rows(results, seconds)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json", "markdown": out_dir / "results.md",
             "pr_curves": out_dir / "figures" / "pr_curves.png", "overlays": out_dir / "figures" / "overlays.png"}
    comparisons = paired_comparisons(results, out_dir)
    checks = target_checks(results, comparisons)
    write_text_atomic(paths["csv"], buffer.getvalue())
    write_json_atomic(paths["json"], json_safe({
        "work_dir": str(Path(work_dir).resolve()), "voxel_mm": voxel_mm,
        "methods": [{k: v for k, v in r.items() if k != "pr_curve"} for r in results],
        "paired_versus_full": comparisons, "targets": checks}))
    write_text_atomic(paths["markdown"], provenance_note(results, source_commit()) + "\n" +
                      markdown_table(results, voxel_mm, seconds) + "\n" + paired_table(comparisons) +
                      ("\n" + targets_table(checks) if checks else ""))
    paths["pr_curves"].parent.mkdir(parents=True, exist_ok=True)
    _pr_figure(results, paths["pr_curves"])
    _overlay_figure(results, out_dir, paths["overlays"])
    return paths
