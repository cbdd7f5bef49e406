"""``pseudohealthy benchmark``: the paper's comparison on one prepared work folder.

For every selected method (``evaluation.methods``): train the models it needs that are missing or
unfinished (resuming), choose its threshold on the validation subjects, run it on the test subjects
and score it (``evaluation.scores``). Each method's result is stored as soon as it is done
(``OUT/methods/<name>.json``), keyed by a fingerprint of its config, weights and split, so an
interrupted benchmark continues where it stopped and a changed method is redone. The table, the
figures and the provenance of every row are then written by ``evaluation.report``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from sklearn.metrics import precision_recall_curve

from pseudohealthy import __version__
from pseudohealthy.config import Config, config_to_yaml, save_config
from pseudohealthy.detect.pipeline import SubjectMaps, required_models
from pseudohealthy.detect.run import roles
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.methods import MethodSpec, method_config
from pseudohealthy.evaluation.run import calibrate_and_test
from pseudohealthy.evaluation.scores import score_subject, summarise_method
from pseudohealthy.io.atomic import write_json_atomic, write_with_atomic
from pseudohealthy.provenance import package_digest, source_commit
from pseudohealthy.templates.grid import template_grid
from pseudohealthy.training.checkpoint import load_checkpoint
from pseudohealthy.training.trainer import model_dir, model_name, train

# callback(event, detail): events "train" (model name), "trained", "method" (name), "subject" (id), "done" (name)
Progress = Callable[[str, str], None]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _iterations(cfg: Config, kind: str) -> int:
    return (cfg.train_classifier if kind == "classifier" else cfg.train_translator).iterations


def ensure_trained(work_dir: Path, cfg: Config, device: str = "cpu", on_event: Progress | None = None,
                   on_step: Callable[[int, int, float], None] | None = None) -> dict[str, dict]:
    """Train (or finish training) every model ``cfg`` needs; returns name -> {sha256, step} of each."""
    out = {}
    for kind in required_models(cfg):
        path = model_dir(work_dir, kind, cfg) / "checkpoint.pt"
        name = model_name(kind, cfg)
        step = int(load_checkpoint(path, expect_kind=kind)["step"]) if path.is_file() else 0
        if step < _iterations(cfg, kind):
            if on_event:
                on_event("train", name)
            train(work_dir, cfg, kind, resume=path.is_file(), device=device, on_step=on_step)
            if on_event:
                on_event("trained", name)
        out[name] = {"sha256": _sha256(path), "step": int(load_checkpoint(path, expect_kind=kind)["step"])}
    return out


def _fingerprint(cfg: Config, checkpoints: dict, split_sha: str) -> str:
    """What a stored result depends on, the package's code included, so a table never mixes code versions."""
    payload = json.dumps({"config": config_to_yaml(cfg), "checkpoints": checkpoints, "split": split_sha,
                          "code": package_digest()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def truth_class(work_dir: Path, pid: str) -> int:
    meta = json.loads((Path(work_dir) / "subjects" / pid / "meta.json").read_text())
    return int(meta.get("label") or 0) if meta.get("group") == "fcd" else 0


def lobe_map(work_dir: Path, pid: str) -> np.ndarray | None:
    path = Path(work_dir) / "subjects" / pid / "lobe.nii.gz"
    return np.asanyarray(nib.load(path).dataobj) if path.is_file() else None


def _pr_curve(maps: dict[str, SubjectMaps], points: int = 400) -> dict[str, list[float]]:
    """The pooled precision-recall curve of the test patients, thinned to about ``points`` points."""
    patients = [m for m in maps.values() if m.lesion.any()]
    if not patients:
        return {"precision": [], "recall": []}
    precision, recall, _ = precision_recall_curve(np.concatenate([m.lesion[m.brain] for m in patients]),
                                                  np.concatenate([m.anomaly[m.brain] for m in patients]))
    # Evenly spaced in recall (most of the curve's points are low thresholds at high recall).
    order = np.argsort(recall, kind="stable")
    nearest = np.searchsorted(recall[order], np.linspace(0, 1, points)).clip(0, len(recall) - 1)
    keep = np.unique(order[nearest])
    return {"precision": precision[keep].round(5).tolist(), "recall": recall[keep].round(5).tolist()}


def example_slice(work_dir: Path) -> tuple[str, int]:
    """The test patient with the largest lesion and its axial slice with the most lesion: every
    method's overlay shows this same slice."""
    best = ("", -1, -1)
    for pid, role in roles(work_dir).items():
        path = Path(work_dir) / "subjects" / pid / "lesion.nii.gz"
        if role != "test" or not path.is_file():
            continue
        area = (np.asanyarray(nib.load(path).dataobj) > 0.5).sum(axis=(0, 1))
        if area.sum() > best[2]:
            best = (pid, int(np.argmax(area)), int(area.sum()))
    if best[2] <= 0:
        raise UserError(f"{work_dir}: no test patient with a lesion mask; the benchmark needs at least one")
    return best[0], best[1]


def run_method(work_dir: Path, spec: MethodSpec, out_dir: Path, overrides: dict[str, Any] | None = None,
               device: str = "cpu", on_event: Progress | None = None,
               on_step: Callable[[int, int, float], None] | None = None) -> dict:
    """Train what is missing, calibrate, test and score one method; cached in OUT/methods/<name>.json."""
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    cfg = method_config(work_dir, spec, overrides)
    checkpoints = ensure_trained(work_dir, cfg, device, on_event, on_step)
    split_sha = _sha256(work_dir / "splits.tsv")
    key = _fingerprint(cfg, checkpoints, split_sha)
    result_path = out_dir / "methods" / f"{spec.name}.json"
    if result_path.is_file():
        cached = json.loads(result_path.read_text())
        if cached.get("fingerprint") == key:
            return cached
    if on_event:
        on_event("method", spec.name)
    calibration, test = calibrate_and_test(work_dir, cfg, device,
                                           on_subject=(lambda pid: on_event("subject", pid)) if on_event else None)
    _, affine = template_grid(cfg.data.template_voxel_mm, cfg.data.image_size)
    subjects = [score_subject(pid, maps, calibration["threshold"], cfg, affine, lobe_map(work_dir, pid),
                              truth_class(work_dir, pid)) for pid, maps in test.items()]
    config_path = out_dir / "configs" / f"{spec.name}.yaml"
    save_config(cfg, config_path)
    pid, z = example_slice(work_dir)
    example = test[pid]
    arrays = {"flair": example.flair[:, :, z], "lesion": example.lesion[:, :, z], "brain": example.brain[:, :, z],
              "score": example.anomaly[:, :, z], "threshold": calibration["threshold"]}
    write_with_atomic(out_dir / "methods" / f"{spec.name}_example.npz",
                      lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")
    result = {
        "name": spec.name, "role": spec.role, "title": spec.title, "fingerprint": key,
        "metrics": summarise_method(subjects, seed=cfg.seed),
        "per_subject": [{"participant_id": s.participant_id, "patient": s.patient, "dice": s.dice,
                         "top1": s.top1, "top3": s.top3, "clusters": s.clusters,
                         "false_clusters": s.false_clusters, "peak_distance_mm": s.peak_distance_mm,
                         "recalled": {str(k): list(v) for k, v in s.recalled.items()}} for s in subjects],
        "pr_curve": _pr_curve(test),
        "calibration": {k: calibration[k] for k in ("threshold", "val_dice", "val_auprc", "chosen_on")},
        "example": {"participant_id": pid, "z": z},
        "provenance": {"config": str(config_path.relative_to(out_dir)), "config_sha256": _sha256(config_path),
                       "checkpoints": checkpoints, "split": "splits.tsv", "split_sha256": split_sha,
                       "test_subjects": list(test), "validation_subjects": calibration["chosen_on"],
                       "seed": cfg.seed, "commit": source_commit(), "code_sha256": package_digest(),
                       "version": __version__},
    }
    write_json_atomic(result_path, result)
    if on_event:
        on_event("done", spec.name)
    return result


def run_benchmark(work_dir: Path, methods: list[MethodSpec], out_dir: Path, overrides: dict[str, Any] | None = None,
                  device: str = "cpu", on_event: Progress | None = None,
                  on_step: Callable[[int, int, float], None] | None = None) -> list[dict]:
    """Every method in turn (see ``run_method``), then the table and figures (``evaluation.report``)."""
    from pseudohealthy.evaluation.report import write_report

    work_dir, out_dir = Path(work_dir), Path(out_dir)
    if not (work_dir / "config.yaml").is_file() or not (work_dir / "splits.tsv").is_file():
        raise UserError(f"{work_dir}: not a prepared work folder; run `pseudohealthy prepare BIDS_DIR {work_dir}` "
                        "or pass --bids BIDS_DIR")
    (out_dir / "methods").mkdir(parents=True, exist_ok=True)
    example_slice(work_dir)  # fail early, before any training, when there is no test patient
    results = [run_method(work_dir, spec, out_dir, overrides, device, on_event, on_step) for spec in methods]
    write_report(results, out_dir, work_dir)
    return results
