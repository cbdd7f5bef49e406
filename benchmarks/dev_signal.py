"""Compare variants of the detector on the development set (`make dev-data`), paired, per patient.

Each ``--variant "NAME [work=WORK_DIR] [SECTION.KEY=VALUE ...]"`` is a configuration of the same pipeline:
the networks of WORK_DIR (default: the first argument) and its config with the overrides. For every variant
and seed, the validation subjects choose the threshold (``choose_threshold``, as ``calibrate``) and the
development subjects (the work folder's ``test`` role: the development phantom's, never a reported test
set) are scored on the template grid:

- per patient: the lesion's contrast-to-noise in the map (``lesion_cnr`` of the signed map: the same
  matching, smoothing and slice standardisation without the positive part), and whether the lesion is the
  first / among the first three regions of the ranked list (clusters above the threshold, then candidates
  above ``report.candidate_floor`` of it, as ``detect`` ranks them; a region finds the lesion when its peak
  lies within 10 mm of it);
- pooled pixel AUPRC over the patients; false-positive clusters per control at the threshold;
- CPU seconds of the pseudo-healthy draws per subject.

Draws are cached per (networks, synthesis settings, subject, seed) under WORK_DIR/dev_signal/cache, so
variants that differ only after the draws (histogram matching, smoothing, ``method.normative``) reuse them,
and an interrupted run resumes. Results: benchmarks/results/dev_<name>.json and a markdown table on stdout,
with every variant against ``--reference`` paired over patients (mean difference, 95 % bootstrap CI).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import provenance, write_result

from pseudohealthy.anomaly.clusters import find_candidates, find_clusters
from pseudohealthy.anomaly.maps import postprocess
from pseudohealthy.baselines.control_zscore import control_zscore
from pseudohealthy.config import load_work_config, with_overrides
from pseudohealthy.config.schema import Config
from pseudohealthy.data.splits import roles
from pseudohealthy.detect.calibration import choose_threshold
from pseudohealthy.detect.pipeline import (
    SubjectMaps,
    SubjectVolumes,
    load_models,
    maps_from_synthesis,
    pseudo_healthy,
    smoothing_voxels,
)
from pseudohealthy.detect.synthesis import Synthesis
from pseudohealthy.evaluation.native_scores import peaks_near_lesion
from pseudohealthy.evaluation.run import parse_settings
from pseudohealthy.metrics import bootstrap_ci, lesion_cnr, pixel_auprc
from pseudohealthy.models.trained import Models, draw_key
from pseudohealthy.templates.grid import template_grid


class Variant:
    """``NAME [work=WORK_DIR] [SECTION.KEY=VALUE ...]``: the networks of WORK_DIR with its config overridden."""

    def __init__(self, spec: str, default_work: Path):
        tokens = shlex.split(spec)
        self.name, settings = tokens[0], tokens[1:]
        self.work = Path(next((t.split("=", 1)[1] for t in settings if t.startswith("work=")), default_work))
        self.overrides = parse_settings([t for t in settings if not t.startswith("work=")])
        self.spec = spec

    def config(self, seed: int) -> Config:
        return with_overrides(load_work_config(self.work), {**self.overrides, "seed": seed})


def draws(cfg: Config, models: Models, volumes: SubjectVolumes, cache: Path) -> tuple[Synthesis, float]:
    """The subject's pseudo-healthy draws and their seconds, from ``cache`` (one folder per ``draw_key``)
    when there."""
    path = cache / f"{volumes.name}_seed{cfg.seed}.npz"
    if path.is_file():
        stored = np.load(path)
        return Synthesis(stored["samples"], stored["class_probabilities"], stored["slices"]), float(stored["seconds"])
    start = time.process_time()
    syn = pseudo_healthy(volumes, models, cfg)
    seconds = time.process_time() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, samples=syn.samples, class_probabilities=syn.class_probabilities, slices=syn.slices,
             seconds=seconds)
    tmp.replace(path)
    return syn, seconds


def signed_map(volumes: SubjectVolumes, maps: SubjectMaps, models: Models, cfg: Config) -> np.ndarray:
    """The map before its positive part: the same difference, mask, smoothing and slice standardisation."""
    if cfg.method.detector == "control_zscore":
        difference = control_zscore(volumes.flair, models.controls)
    else:
        difference = volumes.flair - maps.pseudo_healthy
    if cfg.method.normative:  # z-scoring each voxel commutes with the mean over draws
        difference = models.normative.zscore(difference)
    return postprocess(difference, maps.scored, smoothing_voxels(cfg), cfg.method.slice_standardise, keep_sign=True)


def ranked_hits(maps: SubjectMaps, threshold: float, cfg: Config, affine: np.ndarray) -> tuple[list[bool], int]:
    """Whether each region of the ranked list finds the lesion, and the number of clusters above threshold."""
    clusters, labels = find_clusters(maps.anomaly, affine, threshold, cfg.method.min_cluster_mm3,
                                     rank_by=cfg.method.rank_by)
    candidates, _ = find_candidates(maps.anomaly, affine, cfg.report.candidate_floor * threshold,
                                    cfg.method.min_cluster_mm3, labels, cfg.report.candidates, rank_by=cfg.method.rank_by)
    regions = clusters + candidates
    return peaks_near_lesion([c.peak_mm for c in regions], maps.lesion, affine), len(clusters)


def run_variant(variant: Variant, seed: int, cache: Path, log) -> dict:
    cfg = variant.config(seed)
    torch.manual_seed(seed)
    models = load_models(variant.work, cfg)
    _, affine = template_grid(cfg.data.template_voxel_mm, cfg.data.image_size)
    voxel_ml = cfg.data.template_voxel_mm ** 3 / 1000
    units = roles(variant.work)
    out: dict = {"subjects": {}}
    val_maps, seconds = [], []
    cache = cache / draw_key(variant.work, cfg)[:16]  # hashes the checkpoints once per run, not per subject
    for role in ("val", "test"):
        for unit in sorted(u for u, r in units.items() if r == role):
            volumes = SubjectVolumes.load(variant.work / "subjects" / unit)
            syn, sec = draws(cfg, models, volumes, cache)
            seconds.append(sec)
            maps = maps_from_synthesis(volumes, syn, models, cfg)
            if role == "val":
                val_maps.append(maps)
                continue
            row = {"patient": bool(maps.lesion.any()), "seconds": round(sec, 2)}
            if row["patient"]:
                # against the rest of the voxels the map scores (``method.exclude_csf`` leaves the CSF out)
                row["cnr"] = lesion_cnr(signed_map(volumes, maps, models, cfg), maps.lesion, maps.scored)
                row["lesion_ml"] = round(float(maps.lesion.sum()) * voxel_ml, 3)
            out["subjects"][unit] = (row, maps)
            log(f"  {variant.name} seed {seed} {unit}: {sec:.1f} s")
    threshold, val_dice = choose_threshold(val_maps, cfg)
    rows = {}
    truth, score = [], []
    for unit, (row, maps) in out["subjects"].items():
        hits, clusters = ranked_hits(maps, threshold, cfg, affine)
        row.update(top1=bool(hits[:1] == [True]), top3=any(hits[:3]), clusters=clusters)
        if row["patient"]:
            truth.append(maps.lesion[maps.brain])
            score.append(maps.anomaly[maps.brain])
            row["auprc"] = pixel_auprc(truth[-1], score[-1])
            # Pooled AUPRC is recomputed for bootstrap resamples from these (kept small: brain voxels only).
            row["_truth"], row["_score"] = truth[-1], score[-1]
        rows[unit] = row
    _histograms([r for r in rows.values() if r["patient"]])
    return {"threshold": threshold, "val_dice": val_dice, "seconds_per_subject": float(np.mean(seconds)),
            "subjects": rows}


HIST_LEVELS = 8192  # score bins for pooled AUPRC in the bootstrap (quantiles of the run's pooled scores)


def _histograms(rows: list[dict]) -> None:
    """Per patient, counts of lesion and healthy voxels in bins shared by the run (``_pooled_auprc`` then
    sums counts instead of sorting a million voxels for every bootstrap resample)."""
    pooled = np.concatenate([r["_score"] for r in rows])
    # Dense where lesions are: evenly over the lower 99 %, geometrically toward the very top (one voxel).
    levels = np.r_[np.linspace(0, 0.99, HIST_LEVELS // 4), 1 - np.geomspace(0.01, 1 / pooled.size, HIST_LEVELS)]
    edges = np.unique(np.quantile(pooled, np.clip(levels, 0, 1)))
    for r in rows:
        index = np.clip(np.searchsorted(edges, r["_score"], side="right") - 1, 0, len(edges) - 1)
        r["_positive"] = np.bincount(index[r["_truth"]], minlength=len(edges))
        r["_negative"] = np.bincount(index[~r["_truth"]], minlength=len(edges))


def _pooled_auprc(rows: list[dict]) -> float:
    """Average precision pooled over ``rows`` from their binned counts: precision at each bin, from the
    highest down, weighted by the recall it adds (sklearn's step-wise definition on binned scores)."""
    positive = np.sum([r["_positive"] for r in rows], axis=0)[::-1].cumsum()
    negative = np.sum([r["_negative"] for r in rows], axis=0)[::-1].cumsum()
    if positive[-1] == 0:
        return float("nan")
    precision = positive / np.maximum(positive + negative, 1)
    recall_step = np.diff(np.r_[0, positive]) / positive[-1]
    return float((precision * recall_step).sum())


def summarise(runs: dict[int, dict]) -> dict:
    """Figures of one variant over its seeds: mean and SD over seeds; per-patient CNR averaged over seeds."""
    seeds = sorted(runs)
    per_seed = []
    for seed in seeds:
        rows = runs[seed]["subjects"]
        patients = [r for r in rows.values() if r["patient"]]
        controls = [r for r in rows.values() if not r["patient"]]
        small = [r for r in patients if r["lesion_ml"] < 1.0]
        per_seed.append({
            "auprc": pixel_auprc(np.concatenate([r["_truth"] for r in patients]),
                                 np.concatenate([r["_score"] for r in patients])),
            "top1": float(np.mean([r["top1"] for r in patients])),
            "top3": float(np.mean([r["top3"] for r in patients])),
            "top3_small": float(np.mean([r["top3"] for r in small])) if small else float("nan"),
            "cnr_median": float(np.nanmedian([r["cnr"] for r in patients])),
            "cnr_small_median": float(np.nanmedian([r["cnr"] for r in small])) if small else float("nan"),
            "fp_per_control": float(np.mean([r["clusters"] for r in controls])) if controls else float("nan"),
            "seconds_per_subject": runs[seed]["seconds_per_subject"],
        })
    summary = {key: [float(np.mean([s[key] for s in per_seed])), float(np.std([s[key] for s in per_seed]))]
               for key in per_seed[0]}
    units = sorted(u for u, r in runs[seeds[0]]["subjects"].items() if r["patient"])
    summary["cnr_per_patient"] = {u: float(np.nanmean([runs[s]["subjects"][u]["cnr"] for s in seeds])) for u in units}
    summary["seeds"] = seeds
    return summary


def paired(reference: dict[int, dict], other: dict[int, dict], n_resamples: int = 300) -> dict:
    """Other minus reference over the same patients (seeds pooled): CNR per patient and pooled AUPRC,
    mean difference with a 95 % bootstrap CI over patients."""
    seeds = sorted(set(reference) & set(other))
    units = sorted(u for u, r in reference[seeds[0]]["subjects"].items() if r["patient"])

    def cnr_difference(sample: list[str]) -> float:
        return float(np.nanmean([other[s]["subjects"][u]["cnr"] - reference[s]["subjects"][u]["cnr"]
                                 for u in sample for s in seeds]))

    def auprc_difference(sample: list[str]) -> float:
        return float(np.mean([_pooled_auprc([other[s]["subjects"][u] for u in sample])
                              - _pooled_auprc([reference[s]["subjects"][u] for u in sample]) for s in seeds]))

    def top3_difference(sample: list[str]) -> float:
        return float(np.mean([other[s]["subjects"][u]["top3"] - reference[s]["subjects"][u]["top3"]
                              for u in sample for s in seeds]))

    return {name: [fn(units), *bootstrap_ci(units, fn, n_resamples)]
            for name, fn in (("cnr", cnr_difference), ("auprc", auprc_difference), ("top3", top3_difference))}


def _public(run: dict) -> dict:
    return {**run, "subjects": {u: {k: v for k, v in r.items() if not k.startswith("_")}
                                for u, r in run["subjects"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--variant", action="append", required=True,
                        help='"NAME [work=WORK_DIR] [SECTION.KEY=VALUE ...]"; the first is the reference unless '
                             "--reference names another")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--reference")
    parser.add_argument("--name", required=True, help="results go to benchmarks/results/dev_NAME.json")
    args = parser.parse_args()
    cache = args.work_dir / "dev_signal" / "cache"
    variants = [Variant(spec, args.work_dir) for spec in args.variant]
    reference = args.reference or variants[0].name
    runs: dict[str, dict[int, dict]] = {}
    result = {"provenance": provenance(), "work_dir": str(args.work_dir), "reference": reference,
              "variants": {v.name: {"spec": v.spec} for v in variants}}
    for variant in variants:
        runs[variant.name] = {}
        for seed in args.seeds:
            runs[variant.name][seed] = run_variant(variant, seed, cache, lambda m: print(m, file=sys.stderr, flush=True))
            result["variants"][variant.name].setdefault("runs", {})[str(seed)] = _public(runs[variant.name][seed])
        result["variants"][variant.name]["summary"] = summarise(runs[variant.name])
        write_result(f"dev_{args.name}", result)
    for variant in variants:
        if variant.name != reference:
            result["variants"][variant.name]["vs_reference"] = paired(runs[reference], runs[variant.name])
    write_result(f"dev_{args.name}", result)
    print(table(result))


def table(result: dict) -> str:
    head = ("| variant | AUPRC | top-1 | top-3 | top-3 < 1 cm³ | CNR median | CNR < 1 cm³ | FP clusters/control | "
            "s/subject | Δ CNR vs ref [95 % CI] | Δ AUPRC [CI] | Δ top-3 [CI] |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, v in result["variants"].items():
        s = v["summary"]

        def f(key):
            return f"{s[key][0]:.3f} ± {s[key][1]:.3f}"

        d = v.get("vs_reference")
        diff = ["—"] * 3 if d is None else [f"{d[k][0]:+.3f} [{d[k][1]:+.3f}, {d[k][2]:+.3f}]"
                                            for k in ("cnr", "auprc", "top3")]
        lines.append(f"| {name} | {f('auprc')} | {f('top1')} | {f('top3')} | {f('top3_small')} | {f('cnr_median')} | "
                     f"{f('cnr_small_median')} | {f('fp_per_control')} | {s['seconds_per_subject'][0]:.1f} | "
                     + " | ".join(diff) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
