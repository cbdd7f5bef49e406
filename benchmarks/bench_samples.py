"""How many pseudo-healthy draws per slice (``diffusion.samples``, N) to take: quality against time.

For every seed and every validation and test subject the method is run once with the largest N;
because draw k of a slice is seeded by (seed, subject, slice, k) whatever N is, the first N draws
are exactly what a run with N samples makes, so the maps for N = 1, 2, 4, 8 are the means of the first
N single-sample maps (``tests/test_reproducibility.py`` checks that identity). For each (N, seed)
the threshold is chosen on the validation subjects (``choose_threshold``, as ``calibrate``), then the
test subjects are scored (``evaluation.template_scores``, template grid). Seconds per subject (wall and
process CPU) are measured per N on the first test subjects, side by side, after the quality runs.

N is chosen on the validation subjects only: the smallest N whose validation AUPRC (mean over seeds)
is within one seed-SD of the best N's. Test figures are reported after that choice.

Partial results (each subject's draws) are cached under WORK_DIR/bench_samples/, so an interrupted
run continues. Usage: python benchmarks/bench_samples.py WORK_DIR [--seeds 0 1 2] [--max-samples 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from common import provenance, write_result
from pseudohealthy.config import load_work_config, with_overrides
from pseudohealthy.data.splits import read_splits
from pseudohealthy.detect.calibration import choose_threshold
from pseudohealthy.detect.pipeline import SubjectMaps, analyse, load_models
from pseudohealthy.detect.synthesis import Synthesis
from pseudohealthy.evaluation.run import lobe_map, truth_class
from pseudohealthy.metrics import pixel_auprc
from pseudohealthy.provenance import package_digest
from pseudohealthy.evaluation.template_scores import aggregate, score_subject
from pseudohealthy.io.atomic import write_with_atomic
from pseudohealthy.templates.grid import template_grid

METRICS = ("auprc", "r@5", "r@10", "top1", "top3", "fp_per_control", "dice_val")


def _draws(work: Path, pid: str, seed: int, n: int, models, cfg) -> SubjectMaps:
    """The subject's maps with ``n`` draws for ``seed``, from the cache when there."""
    cache = work / "bench_samples" / f"seed-{seed}" / f"{pid}.npz"
    if not cache.is_file():
        maps = analyse(work / "subjects" / pid, models, with_overrides(cfg, {"seed": seed}), samples=n)
        arrays = {"sample_maps": maps.sample_maps, "brain": maps.brain,
                  "probs": maps.synthesis.class_probabilities, "slices": maps.synthesis.slices}
        write_with_atomic(cache, lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")
    data = np.load(cache)
    lesion = np.asanyarray(nib.load(work / "subjects" / pid / "lesion.nii.gz").dataobj) > 0.5
    syn = Synthesis(np.zeros((0,)), data["probs"], data["slices"])
    return SubjectMaps(np.zeros(0), np.zeros(0), data["sample_maps"].mean(axis=0), data["brain"], lesion, syn,
                       data["sample_maps"])


def _first(maps: SubjectMaps, n: int) -> SubjectMaps:
    sample_maps = maps.sample_maps[:n]
    return SubjectMaps(maps.flair, maps.pseudo_healthy, sample_maps.mean(axis=0), maps.brain, maps.lesion,
                       maps.synthesis, sample_maps)


def _auprc(maps: list[SubjectMaps]) -> float:
    patients = [m for m in maps if m.lesion.any()]
    if not patients:
        return float("nan")
    return pixel_auprc(np.concatenate([m.lesion[m.brain] for m in patients]),
                       np.concatenate([m.anomaly[m.brain] for m in patients]))


def _seconds_per_subject(work: Path, pids: list[str], models, cfg, n: int) -> dict:
    """Wall-clock and process CPU seconds per subject of ``analyse`` with ``n`` samples (CPU time is
    what to compare when another job shares the machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for pid in pids:
        analyse(work / "subjects" / pid, models, cfg, samples=n)
    return {"wall": round((time.perf_counter() - wall) / len(pids), 2),
            "cpu": round((time.process_time() - cpu) / len(pids), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="WORK_DIR with trained, calibrated models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-samples", type=int, default=8)
    parser.add_argument("--timing-subjects", type=int, default=2, help="test subjects timed per N")
    parser.add_argument("--name", default="samples", help="result file name under benchmarks/results/")
    args = parser.parse_args()
    work = args.work
    cfg = load_work_config(work)
    models = load_models(work, cfg)
    _, affine = template_grid(cfg.data.template_voxel_mm, cfg.data.image_size)
    rows = read_splits(work)
    val = [pid for pid, _, role in rows if role == "val"]
    test = [pid for pid, _, role in rows if role == "test"]
    ns = [n for n in (1, 2, 4, 8, 16, 32) if n <= args.max_samples]
    result = {"provenance": {**provenance(cfg), "code_sha256": package_digest(), "work": str(work)},
              "seeds": args.seeds, "samples": ns, "validation_subjects": val, "test_subjects": test,
              "per_seed": [], "seconds_per_subject": {}}

    for seed in args.seeds:
        maps = {pid: _draws(work, pid, seed, args.max_samples, models, cfg) for pid in val + test}
        for n in ns:
            chosen = {pid: _first(m, n) for pid, m in maps.items()}
            threshold, val_dice = choose_threshold([chosen[p] for p in val], cfg)
            scores = [score_subject(pid, chosen[pid], threshold, cfg, affine, lobe_map(work, pid),
                                    truth_class(work, pid)) for pid in test]
            test_figures = aggregate(scores)
            result["per_seed"].append({
                "seed": seed, "samples": n, "threshold": threshold, "val_dice": val_dice,
                "val_auprc": _auprc([chosen[p] for p in val]),
                "test": {k: test_figures[k] for k in METRICS}})
            print(f"seed {seed} N {n}: val AUPRC {result['per_seed'][-1]['val_auprc']:.3f}, test "
                  + ", ".join(f"{k} {test_figures[k]:.3f}" for k in METRICS), flush=True)
        write_result(args.name, result)

    for n in ns:  # timed after the quality runs, side by side, on the first test subjects
        result["seconds_per_subject"][str(n)] = _seconds_per_subject(work, test[: args.timing_subjects], models,
                                                                     cfg, n)
        print(f"N = {n}: {result['seconds_per_subject'][str(n)]} s per subject", flush=True)
    write_result(args.name, result)

    summary = {}
    for n in ns:
        runs = [r for r in result["per_seed"] if r["samples"] == n]
        entry = {"val_auprc_mean": float(np.mean([r["val_auprc"] for r in runs])),
                 "val_auprc_sd": float(np.std([r["val_auprc"] for r in runs], ddof=1)) if len(runs) > 1 else 0.0}
        for k in METRICS:
            values = [r["test"][k] for r in runs]
            entry[f"test_{k}_mean"] = float(np.nanmean(values))
            entry[f"test_{k}_sd"] = float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0
        summary[str(n)] = entry
    best = max(ns, key=lambda n: summary[str(n)]["val_auprc_mean"])
    bar = summary[str(best)]["val_auprc_mean"] - summary[str(best)]["val_auprc_sd"]
    eligible = [n for n in ns if summary[str(n)]["val_auprc_mean"] >= bar]
    chosen_n = min(eligible) if eligible else None  # None: no validation patient to choose on
    base = summary[str(ns[0])]
    for n in ns[1:]:
        extra = result["seconds_per_subject"][str(n)]["cpu"] - result["seconds_per_subject"][str(ns[0])]["cpu"]
        summary[str(n)]["val_auprc_gain_per_extra_cpu_second"] = \
            (summary[str(n)]["val_auprc_mean"] - base["val_auprc_mean"]) / extra if extra > 0 else float("nan")
    result.update({"summary": summary, "best_on_validation": best, "chosen_samples": chosen_n,
                   "rule": "smallest N whose validation AUPRC (mean over seeds) is within one seed-SD of the best N's"})
    path = write_result(args.name, result)
    print(f"chosen on validation: N = {chosen_n} (best validation AUPRC at N = {best}); {path}")


if __name__ == "__main__":
    main()
