"""Detection speed, measured side by side in one run on one trained model (issue: performance).

- our detector (all slices batched, the config's steps) vs a reference-style loop (slice by slice,
  batch 1, fp32, 100 DDIM steps to L = 100 of 1000), with the AUPRC of each on the same subject;
- a sweep of DDIM steps and of batch size (time and AUPRC), and bf16 autocast vs fp32;
- detection time against the number of slices (expected linear);
- peak resident memory of `pseudohealthy detect` on one subject (a child process).

Usage: python benchmarks/bench_detect.py WORK_DIR [--bids BIDS_DIR] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import peak_rss_mb, provenance, write_result
from pseudohealthy.config import load_work_config
from pseudohealthy.detect.pipeline import analyse, load_models
from pseudohealthy.detect.synthesis import synthesize
from pseudohealthy.evaluation.metrics import pixel_auprc


def _test_patient(work: Path) -> str:
    rows = [line.split("\t") for line in (work / "splits.tsv").read_text().splitlines()[1:]]
    patients = [r[0] for r in rows if r[2] == "test" and r[1] == "fcd"]
    if not patients:
        sys.exit(f"{work}/splits.tsv has no test patient to benchmark on")
    return patients[0]


def _timed(subject: Path, models, cfg, **overrides) -> dict:
    start = time.perf_counter()
    maps = analyse(subject, models, cfg, **overrides)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "auprc": round(pixel_auprc(maps.lesion[maps.brain], maps.anomaly[maps.brain]), 4),
            "slices": int(len(maps.synthesis.slices)), **overrides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="WORK_DIR with trained models (e.g. demo-work/model)")
    parser.add_argument("--bids", type=Path, help="BIDS_DIR for the memory run (default: WORK_DIR/../bids)")
    parser.add_argument("--quick", action="store_true", help="fewer sweep points")
    args = parser.parse_args()
    work = args.work
    if not (work / "calibration.json").is_file():
        sys.exit(f"{work}: no trained and calibrated model; run `make demo` first (or pass another WORK_DIR)")
    cfg = load_work_config(work)
    models = load_models(work, cfg)
    pid = _test_patient(work)
    subject = work / "subjects" / pid
    result = {"subject": pid, **provenance(cfg)}

    ours = _timed(subject, models, cfg)
    reference = _timed(subject, models, cfg, batch_size=1, steps=100, noise_level=100)
    result["ours_vs_reference_loop"] = {
        "ours": ours, "reference_loop": reference,
        "speedup": round(reference["seconds"] / ours["seconds"], 1),
        "auprc_difference": round(ours["auprc"] - reference["auprc"], 4)}
    write_result("detect", result)  # partial results survive an interrupted benchmark
    print(f"{pid}: ours {ours['seconds']} s (AUPRC {ours['auprc']}), reference-style loop "
          f"{reference['seconds']} s (AUPRC {reference['auprc']}): {result['ours_vs_reference_loop']['speedup']}x")

    steps = [5, 10, 25] if args.quick else [5, 10, 25, 50, 100]  # at the config's L (ours: 200)
    result["steps_sweep"] = [_timed(subject, models, cfg, steps=k) for k in steps]
    batches = [1, 16, 64] if args.quick else [1, 8, 16, 32, 64]
    result["batch_sweep"] = [_timed(subject, models, cfg, batch_size=b, steps=10) for b in batches]
    bf16 = cfg.model_copy(update={"diffusion": cfg.diffusion.model_copy(update={"precision": "bfloat16"})})
    result["precision"] = {"float32": _timed(subject, models, cfg, steps=10),
                           "bfloat16": _timed(subject, models, bf16, steps=10)}
    for row in result["steps_sweep"] + result["batch_sweep"]:
        print({k: row[k] for k in row if k in ("steps", "batch_size", "seconds", "auprc")})
    print("precision:", {k: (v["seconds"], v["auprc"]) for k, v in result["precision"].items()})
    write_result("detect", result)

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
        syn = synthesize(vol["flair"], vol["t1"], part, models, cfg, steps=10)
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
    print("results:", write_result("detect", result))


if __name__ == "__main__":
    main()
