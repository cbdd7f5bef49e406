"""Detection speed, measured side by side in one run on one trained model, split by where it comes from.

- speed split by source, on every test patient, for each noise seed (one draw per slice in all three
  runs, so that only what is named differs):
  (a) engineering: our detector (all slices batched, the config's precision) against the same settings
      (steps, L, eta) run slice by slice, batch 1, fp32;
  (b) total: our detector against a paper-style loop (slice by slice, batch 1, fp32, 100 DDIM steps to
      L = 100 of 1000, eta = 0 and guidance added to x after every step, as the authors' code and config),
      each with its AUPRC pooled over the test patients;
      the ">= 20x at equal quality" claim holds only if our pooled AUPRC is within 0.02 of the loop's or
      above its seed range;
- a sweep of DDIM steps and of batch size (time and AUPRC), and bf16 autocast vs fp32;
- detection time against the number of slices (expected linear);
- peak resident memory and time of `pseudohealthy detect` on one subject (a child process), at the
  work folder's preset and at the 128 px `medium` preset (``detect_128px.py``).

Usage: python benchmarks/bench_detect.py WORK_DIR [--bids BIDS_DIR] [--quick] [--seeds 0 1 2] [--split-only]
       [--config CONFIG.yaml] [--set SECTION.KEY=VALUE ...] [--name RESULTS_NAME]

The speed split is written after every (run, seed) and resumes from an interrupted run of the same name.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import earlier_result, peak_rss_mb, provenance, write_result
from pseudohealthy.config import load_config, load_work_config, with_overrides
from pseudohealthy.data.splits import read_splits
from pseudohealthy.detect.pipeline import analyse, load_models, normative_for
from pseudohealthy.detect.synthesis import synthesize
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.run import parse_settings
from pseudohealthy.metrics import pixel_auprc


def _test_patients(work: Path) -> list[str]:
    patients = [pid for pid, group, role in read_splits(work) if role == "test" and group == "fcd"]
    if not patients:
        sys.exit(f"{work}/splits.tsv has no test patient to benchmark on")
    return patients


def _timed(subjects: list[Path], models, cfg, **overrides) -> dict:
    """Seconds per subject and the pooled AUPRC of ``subjects`` under ``overrides``. With ``method.normative``
    the statistics of ``cfg``'s draws are read or fitted first (a calibration-time cost, not timed)."""
    if cfg.method.normative:
        work = subjects[0].parent.parent
        models = replace(models, normative=normative_for(work, models, cfg))
    start = time.perf_counter()
    maps = [analyse(subject, models, cfg, **overrides) for subject in subjects]
    seconds = (time.perf_counter() - start) / len(subjects)
    auprc = pixel_auprc(np.concatenate([m.lesion[m.brain] for m in maps]),
                        np.concatenate([m.anomaly[m.brain] for m in maps]))
    return {"seconds_per_subject": round(seconds, 2), "auprc": round(auprc, 4),
            "slices": int(np.mean([len(m.synthesis.slices) for m in maps])), **overrides}


def _paper_loop(cfg):
    """``cfg`` run as the authors' code does (CodePYJ/FCD-Detection ``ddpm2.py``, mode ``cg``, and its config):
    100 DDIM steps to L = 100 with η = 0, guidance added to x after every step, fp32, no reinsertion and no
    normative residual (both ours)."""
    return with_overrides(cfg, {"diffusion": {"guidance_form": "x", "precision": "float32", "steps": 100,
                                              "noise_level": 100, "eta": 0.0, "reinsert": False},
                                "method": {"normative": False}})


def _resumable_rows(name: str, result: dict) -> dict:
    """The split rows of an earlier, interrupted run of ``name`` on the same subjects, config and machine."""
    earlier = earlier_result(name)
    if not earlier or any(earlier.get(key) != result[key] for key in ("subjects", "config", "machine")):
        return {}
    return earlier.get("speed_by_source", {}).get("runs", {})


def speed_split(subjects: list[Path], models, runs: dict, seeds: list[int], result: dict, name: str) -> dict:
    """Seconds per subject and pooled AUPRC of each run and seed; written after every row, resumed by row.

    A split on many subjects takes hours on 2 cores (the paper-style loop dominates): a row finished by an
    earlier run on the same subjects, config and machine is kept, so the command can be stopped and started.
    """
    done = _resumable_rows(name, result)
    split: dict[str, list[dict]] = {}
    result["speed_by_source"] = {"seeds": seeds, "runs": split, "complete": False}
    for run, (run_cfg, overrides) in runs.items():
        split[run] = []
        for seed in seeds:
            row = next((r for r in done.get(run, []) if r["seed"] == seed), None)
            if row is None:
                row = {**_timed(subjects, models, run_cfg, seed=seed, **overrides), "commit": result["commit"]}
                print(f"{run} seed {seed}: {row['seconds_per_subject']} s per subject, AUPRC {row['auprc']}",
                      flush=True)
            split[run].append(row)
            write_result(name, result)
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="WORK_DIR with trained models (e.g. demo-work/model)")
    parser.add_argument("--bids", type=Path, help="BIDS_DIR for the memory run (default: WORK_DIR/../bids)")
    parser.add_argument("--quick", action="store_true", help="fewer sweep points")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="noise seeds of the speed split")
    parser.add_argument("--split-only", action="store_true", help="stop after the speed split by source")
    parser.add_argument("--config", type=Path,
                        help="a resolved config instead of the work folder's, e.g. the settings `benchmark` chose "
                             "on validation subjects: WORK_DIR/benchmark/configs/full.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting of that config (the work folder's or --config's) for every run, "
                             "e.g. diffusion.noise_level=300")
    parser.add_argument("--name", help="results file name under benchmarks/results/ "
                                       "(default: detect_split with --split-only, else detect)")
    args = parser.parse_args()
    work = args.work
    name = args.name or ("detect_split" if args.split_only else "detect")
    if not args.split_only and not (work / "calibration.json").is_file():
        sys.exit(f"{work}: no trained and calibrated model; run `make demo` first (or pass another WORK_DIR)")
    try:
        base = load_config(args.config) if args.config else load_work_config(work)
        cfg = with_overrides(base, parse_settings(args.set))
        models = load_models(work, cfg)
    except UserError as exc:
        sys.exit(str(exc))
    patients = _test_patients(work)
    subjects = [work / "subjects" / pid for pid in patients]
    result = {"subjects": patients, **provenance(cfg)}

    # speed split by source: every test patient, each seed; one draw per slice everywhere
    one = with_overrides(cfg, {"diffusion": {"samples": 1}})
    runs = {"ours": (one, {}),
            "same_settings_batch1_fp32": (with_overrides(one, {"diffusion": {"precision": "float32"}}),
                                          {"batch_size": 1}),
            "paper_loop": (_paper_loop(one), {"batch_size": 1})}
    split = speed_split(subjects, models, runs, args.seeds, result, name)
    summary = {run: {"seconds_per_subject": float(np.mean([r["seconds_per_subject"] for r in rows])),
                     "auprc_mean": float(np.mean([r["auprc"] for r in rows])),
                     "auprc_range": [min(r["auprc"] for r in rows), max(r["auprc"] for r in rows)]}
               for run, rows in split.items()}
    ours_s = summary["ours"]["seconds_per_subject"]
    paper = summary["paper_loop"]
    result["speed_by_source"].update({
        "summary": summary, "complete": True,
        "engineering_speedup": round(summary["same_settings_batch1_fp32"]["seconds_per_subject"] / ours_s, 2),
        "total_speedup": round(paper["seconds_per_subject"] / ours_s, 2),
        "equal_quality": bool(summary["ours"]["auprc_mean"] >= paper["auprc_mean"] - 0.02
                              or summary["ours"]["auprc_mean"] > paper["auprc_range"][1])})
    write_result(name, result)
    print(json.dumps({k: v for k, v in result["speed_by_source"].items() if k != "runs"}, indent=1))
    if args.split_only:
        return
    pid, subject = patients[0], subjects[0]

    # sweeps pool the AUPRC over all test patients (one subject's AUPRC varies a lot with the sampling noise)
    steps = [5, 10, 25] if args.quick else [5, 10, 25, 50, 100]  # at the config's L (quick: 200)
    result["steps_sweep"] = [{**_timed(subjects, models, with_overrides(cfg, {"diffusion": {"steps": k}})), "steps": k}
                             for k in steps]
    write_result(name, result)
    batches = [1, 16, 64] if args.quick else [1, 8, 16, 32, 64]
    result["batch_sweep"] = [_timed([subject], models, cfg, batch_size=b) for b in batches]
    result["precision"] = {p: _timed(subjects, models, with_overrides(cfg, {"diffusion": {"precision": p}}))
                           for p in ("float32", "bfloat16")}
    for row in result["steps_sweep"] + result["batch_sweep"]:
        print({k: row[k] for k in row if k in ("steps", "batch_size", "seconds_per_subject", "auprc")})
    print("precision:", {k: (v["seconds_per_subject"], v["auprc"]) for k, v in result["precision"].items()})
    write_result(name, result)

    # time against the number of slices: the same subject with its brain restricted to n slices
    import nibabel as nib

    vol = {n: np.asanyarray(nib.load(subject / f"{n}.nii.gz").dataobj).astype(np.float32) for n in ("flair", "t1")}
    brain = np.asanyarray(nib.load(subject / "brain.nii.gz").dataobj) > 0
    zs = np.flatnonzero(brain.any(axis=(0, 1)))
    scaling = []
    for n in sorted({max(len(zs) // 4, 1), len(zs) // 2, len(zs)}):
        part = brain.copy()
        part[:, :, zs[n:]] = False
        start = time.perf_counter()
        syn = synthesize(vol["flair"], vol["t1"], part, models, cfg)
        scaling.append({"slices": int(len(syn.slices)), "seconds": round(time.perf_counter() - start, 2)})
    slope, intercept = np.polyfit([s["slices"] for s in scaling], [s["seconds"] for s in scaling], 1)
    result["slice_scaling"] = {"points": scaling, "seconds_per_slice": round(float(slope), 3),
                               "intercept_s": round(float(intercept), 2)}
    print("slice scaling:", result["slice_scaling"])

    bids = args.bids or work.parent / "bids"
    with tempfile.TemporaryDirectory() as tmp:
        rss, seconds, rc = peak_rss_mb([sys.executable, "-m", "pseudohealthy", "detect", str(bids), f"{tmp}/out",
                                        "participant", "--model", str(work), "--participant-label", pid])
    result["detect_cli"] = {"peak_rss_mb": round(rss), "seconds": round(seconds, 1), "exit_code": rc}
    print(f"detect CLI on one subject: {seconds:.0f} s, peak RSS {rss:.0f} MB")
    write_result(name, result)

    medium = subprocess.run([sys.executable, str(Path(__file__).with_name("detect_128px.py")), str(bids), pid],
                            capture_output=True, text=True)
    result["detect_cli_128px"] = json.loads(medium.stdout.strip().splitlines()[-1]) if medium.returncode == 0 \
        else {"error": medium.stderr[-500:]}
    print("detect CLI at 128 px (medium preset):", result["detect_cli_128px"])
    print("results:", write_result(name, result))


if __name__ == "__main__":
    main()
