"""What the brain mask changes in detection: the same trained models, calibrated and run with the MNI152
template mask after the affine registration (``data.brain_mask: template``) and with deepbet's learned
mask of the T1w (``deepbet``, what ``auto`` picks for these whole-head phantoms), scored from the
derivatives ``detect`` writes (native FLAIR space): false-positive clusters per test control, detection
of test patients, native pixel AUPRC, and each mask's Dice against the phantom's true brain.

Each arm gets its own work folder under WORK_DIR/bench_brain_mask/<arm> (config with that mask, the
work folder's splits and a link to its trained models), preprocesses the validation and test subjects
with its mask, chooses its threshold on the validation subjects (``calibrate``) and runs ``detect`` on
the test subjects. The models were trained on template-masked slices: the deepbet arm changes the mask
at calibration and detection only (what a user switching the option on an existing model gets).
Usage: python benchmarks/bench_brain_mask_detection.py WORK_DIR BIDS_DIR TRUTH_DIR [--samples N] [--score-only]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from common import earlier_result, provenance, write_result
from pseudohealthy.anomaly.clusters import find_clusters
from pseudohealthy.config import load_work_config, save_config, with_overrides
from pseudohealthy.data.bids import build_inventory, unit_path, unit_subject
from pseudohealthy.data.preprocess import NativeMapper, is_done, preprocess_subject
from pseudohealthy.data.splits import read_splits
from pseudohealthy.detect.calibration import calibrate
from pseudohealthy.detect.run import detect
from pseudohealthy.evaluation.native_scores import score_unit, summarise_outputs
from pseudohealthy.metrics import dice
from pseudohealthy.phantom.readback import true_brain_mask

ARMS = {"template": "template", "deepbet": "deepbet"}


def _prepare_one(args) -> str:
    inputs, data_cfg, out = args
    if not is_done(Path(out), data_cfg):
        preprocess_subject(inputs, data_cfg, Path(out))
    return inputs.unit


def arm_folder(work: Path, arm: str, samples: int | None) -> Path:
    """A work folder that shares ``work``'s models and splits and uses this arm's brain mask."""
    folder = work / "bench_brain_mask" / arm
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {"data": {"brain_mask": ARMS[arm]}}
    if samples:
        overrides["diffusion"] = {"samples": samples}
    save_config(with_overrides(load_work_config(work), overrides, "bench_brain_mask"), folder / "config.yaml")
    shutil.copy2(work / "splits.tsv", folder / "splits.tsv")
    if not (folder / "models").exists():
        os.symlink((work / "models").resolve(), folder / "models")
    return folder


RATIOS = (0.5, 0.75, 1.0)  # operating points: fractions of each arm's own validation-chosen threshold


def operating_points(out: Path, units: list[str], lesions: dict[str, Path | None], min_mm3: float) -> dict:
    """Clusters per control and lesions hit at lower thresholds than the calibrated one, from the written
    probseg maps (at the calibrated threshold both arms may find nothing, which says little)."""
    table = {}
    for ratio in RATIOS:
        level = ratio / (1 + ratio)  # s > ratio * threshold on the probseg scale s / (s + threshold)
        fp, hit, false = [], [], []
        for unit in units:
            probseg = nib.load(next((out / unit_path(unit) / "anat").glob("*desc-anomaly_probseg.nii.gz")))
            clusters, labels = find_clusters(np.asarray(probseg.dataobj), probseg.affine, level, min_mm3)
            if lesions[unit] is None:
                fp.append(len(clusters))
                continue
            lesion = np.asarray(nib.load(lesions[unit]).dataobj) > 0
            on = [bool(lesion[labels == c.rank].any()) for c in clusters]
            hit.append(any(on))
            false.append(len(on) - sum(on))
        table[str(ratio)] = {"fp_clusters_per_control": float(np.mean(fp)), "detected": float(np.mean(hit)),
                             "false_clusters_per_patient": float(np.mean(false))}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("bids", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--samples", type=int, default=None, help="draws per slice (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--score-only", action="store_true", help="re-score the arms' existing derivatives")
    parser.add_argument("--result", default="brain_mask_detection", help="name of the results JSON")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                        help="arms to run (the others keep their earlier results)")
    args = parser.parse_args()
    roles = {unit: role for unit, _, role in read_splits(args.work)}
    units = sorted(u for u, r in roles.items() if r in ("val", "test"))
    test = sorted(u for u in units if roles[u] == "test")
    inventory = {s.unit: s for s in build_inventory(args.bids, sorted({unit_subject(u) for u in units})).subjects}
    lesions = {u: inventory[u].lesion_mask for u in test}
    truth = {s["participant_id"]: s for s in json.loads((args.truth / "truth.json").read_text())["subjects"]}
    previous = earlier_result(args.result) or {"arms": {}}
    result = {"provenance": provenance(), "work": str(args.work), "validation": sorted(set(units) - set(test)),
              "test": test, "arms": {arm: previous["arms"][arm] for arm in ARMS
                                     if arm not in args.arms and arm in previous["arms"]}}
    for arm in args.arms:
        folder = args.work / "bench_brain_mask" / arm
        out = folder / "derivatives"
        if args.score_only:
            seconds = previous["arms"][arm]["seconds"]
        else:
            folder = arm_folder(args.work, arm, args.samples)
            cfg = load_work_config(folder)
            start = time.perf_counter()
            work = [(inventory[u], cfg.data, str(folder / "subjects" / u)) for u in units]
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                list(pool.map(_prepare_one, work))
            prepare_s = time.perf_counter() - start
            calibrate(folder)
            calibrate_s = time.perf_counter() - start - prepare_s
            detect(args.bids, out, folder, sorted({unit_subject(u) for u in test}), overwrite=True,
                   work_root=folder / "subjects")
            detect_s = time.perf_counter() - start - prepare_s - calibrate_s
            seconds = {"prepare": round(prepare_s), "calibrate": round(calibrate_s), "detect": round(detect_s)}
        cfg = load_work_config(folder)
        calibration = json.loads((folder / "calibration.json").read_text())
        scores = [score_unit(out, u, lesions[u]) for u in test]
        mask_dice = []
        for u in test:
            flair = nib.load(inventory[u].flair)
            brain = np.asarray(NativeMapper(folder / "subjects" / u)(np.asarray(
                nib.load(folder / "subjects" / u / "brain.nii.gz").dataobj, np.float32)).dataobj) > 0.5
            mask_dice.append(dice(brain, true_brain_mask(truth[unit_subject(u)], args.truth, flair)))
        result["arms"][arm] = {
            "brain_mask": ARMS[arm], "threshold": calibration["threshold"], "val_dice": calibration["val_dice"],
            "val_auprc": calibration["val_auprc"], "samples": cfg.diffusion.samples,
            "summary": summarise_outputs(scores),
            "operating_points": operating_points(out, test, lesions, calibration["min_cluster_mm3"]),
            "mask_dice_test_mean": float(np.mean(mask_dice)), "per_subject": [s.row() for s in scores],
            "seconds": seconds}
        print(arm, json.dumps(result["arms"][arm]["summary"]), json.dumps(result["arms"][arm]["operating_points"]),
              seconds, flush=True)
        write_result(args.result, result)  # partial results after each arm
    print(write_result(args.result, result))


if __name__ == "__main__":
    main()
