"""``pseudohealthy benchmark``: the paper's comparison on one prepared work folder.

For every selected method (``evaluation.methods``):

1. train the models of every point of its grid that are missing or unfinished (resuming);
2. choose its settings by ``tune`` on the validation subjects only (its own grid, its own threshold);
3. for each seed: choose the threshold on the validation subjects with the chosen settings, run
   ``detect_subject`` (the code that makes a user's derivatives) on every test unit, and score the written
   native-space outputs (``evaluation.native_scores``) against the dataset's lesion masks; the template-grid
   figures of the same maps (AUPRC, R@k, Dice at the validation and oracle thresholds) go beside them;
4. summarise over seeds (mean, seed SD, 95 % CIs over subjects and seeds) and by conspicuity stratum.

Each (method, seed) result is stored as soon as it is done (``OUT/methods/<name>/seed-<s>.json``), keyed by
a fingerprint of its config, weights, split and code, so an interrupted benchmark continues where it
stopped and a changed method is redone. The table, the figures and the provenance of every row are then
written by ``evaluation.report``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pseudohealthy import __version__, workdir
from pseudohealthy.config import Config, config_to_yaml, save_config, with_overrides
from pseudohealthy.config.loader import deep_update
from pseudohealthy.data.splits import roles
from pseudohealthy.detect.calibration import analyse_role, calibration_from
from pseudohealthy.detect.detector import Detector, with_samples
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.methods import TRANSFER_NAME, MethodSpec, method_config, transfer_spec
from pseudohealthy.evaluation.native_scores import (
    OutputScore,
    load_scores,
    pr_curve,
    save_histograms,
    stratified,
    summarise_outputs,
)
from pseudohealthy.evaluation.report import json_safe, nan_for_null
from pseudohealthy.evaluation.run import require_same_preprocessing, score_test_units
from pseudohealthy.evaluation.template_scores import summarise_method
from pseudohealthy.evaluation.tune import parse_grid, recorded_total, tune
from pseudohealthy.io.atomic import write_json_atomic, write_with_atomic
from pseudohealthy.metrics import seed_subject_cis
from pseudohealthy.models.checkpoint import load_checkpoint
from pseudohealthy.models.trained import model_dir, model_name, required_models
from pseudohealthy.provenance import machine, package_digest, source_commit
from pseudohealthy.training.trainer import train

# Read from detect's native outputs (mean, seed SD, CI over subjects and seeds) ...
OUTPUT_FIGURES = ("native_auprc", "detected", "top1", "top3", "ranked_top1", "ranked_top3", "ranked_any",
                  "fp_clusters_per_control", "false_clusters_per_patient", "dice")
# ... and, beside them, from the same maps on the template grid (mean and seed SD).
TEMPLATE_FIGURES = ("auprc", "r@5", "r@10", "dice_val", "dice_oracle")

# callback(event, detail): events "train" (model name), "trained", "tune" (method), "point" (method and grid point,
# a new validation run), "method" (method and seed), "subject" (unit), "done" (method)
Progress = Callable[[str, str], None]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _iterations(cfg: Config, kind: str) -> int:
    return (cfg.train_classifier if kind == "classifier" else cfg.train_translator).iterations


def ensure_trained(work_dir: Path, cfg: Config, device: str = "cpu", on_event: Progress | None = None,
                   on_step: Callable[[int, int, float], None] | None = None,
                   trainable: bool = True) -> dict[str, dict]:
    """Train (or finish training) every model ``cfg`` needs; returns name -> {sha256, step} of each.
    ``trainable=False``: the models must be there already (another dataset's networks, used as they are)."""
    out = {}
    for kind in required_models(cfg):
        path = workdir.checkpoint_file(model_dir(work_dir, kind, cfg))
        name = model_name(kind, cfg)
        if not trainable and not path.is_file():
            raise UserError(f"{work_dir}: has no trained {name}, which this method needs; it is used as it is, "
                            "not trained here")
        step = int(load_checkpoint(path, expect_kind=kind)["step"]) if path.is_file() else 0
        if trainable and step < _iterations(cfg, kind):
            if on_event:
                on_event("train", name)
            train(work_dir, cfg, kind, resume=path.is_file(), device=device, on_step=on_step)
            if on_event:
                on_event("trained", name)
        out[name] = {"sha256": _sha256(path), "step": int(load_checkpoint(path, expect_kind=kind)["step"])}
    return out


def _grid(spec: MethodSpec) -> list[dict]:
    return parse_grid(list(spec.grid)) if spec.grid else [{}]


def grid_networks(model_root: Path, cfg: Config, grid: list[dict], trainable: bool, device: str = "cpu",
                  on_event: Progress | None = None,
                  on_step: Callable[[int, int, float], None] | None = None) -> dict[str, dict]:
    """``ensure_trained`` for every point of a method's grid (a grid over training knobs, the autoencoder's
    noise, trains one model per point); name -> {sha256, step} of each network."""
    checkpoints = {}
    for point in grid:
        checkpoints.update(ensure_trained(model_root, with_overrides(cfg, point, "grid"), device, on_event, on_step,
                                          trainable=trainable))
    return checkpoints


# Package code that cannot change a stored (method, seed) result: the command line, model archives and their
# card, the phantom generator (the data are fixed by the prepared work folder) and the report writers (run
# afresh on every call).
PRESENTATION_CODE = ("cli/", "bundle/", "models/card.py", "phantom/", "evaluation/report.py", "detect/report.py")


def _fingerprint(cfg: Config, checkpoints: dict, split_sha: str) -> str:
    """What a stored result depends on, the code that computes it included, so a table never mixes code
    versions; presentation code is left out so a report or CLI fix does not re-run hours of synthesis."""
    payload = json.dumps({"config": config_to_yaml(cfg), "checkpoints": checkpoints, "split": split_sha,
                          "code": package_digest(skip=PRESENTATION_CODE)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def example_slice(work_dir: Path) -> tuple[str, int]:
    """The test patient with the largest lesion and its axial slice with the most lesion: every
    method's overlay shows this same slice."""
    best = ("", -1, -1)
    for pid, role in roles(work_dir).items():
        path = workdir.volume_file(workdir.subject_dir(work_dir, pid), "lesion")
        if role != "test" or not path.is_file():
            continue
        area = (np.asanyarray(nib.load(path).dataobj) > 0.5).sum(axis=(0, 1))
        if area.sum() > best[2]:
            best = (pid, int(np.argmax(area)), int(area.sum()))
    if best[2] <= 0:
        raise UserError(f"{work_dir}: no test patient with a lesion mask; the benchmark needs at least one")
    return best[0], best[1]


def _seed_run(work_dir: Path, detector: Detector, out_dir: Path, device: str, on_event: Progress | None,
              example: tuple[str, int], calibration: dict | None = None) -> tuple[dict, list[OutputScore], dict, dict]:
    """One seed: the validation threshold (``calibration``: the sweep's own for these settings and seed, else
    run on the validation subjects), then the test units through ``score_test_units``; returns
    (calibration, native scores, template-grid summary, the arrays of the ``example`` (unit, slice))."""
    cfg = detector.cfg
    if calibration is None:
        calibration = calibration_from(analyse_role(work_dir, "val", detector.models, cfg, device), cfg)
    example_unit, z = example
    outputs, template, maps = score_test_units(work_dir, detector.calibrated(calibration), out_dir, device,
                                                (lambda unit: on_event("subject", unit)) if on_event else None,
                                                keep=example_unit)
    example = {"flair": maps.flair[:, :, z], "lesion": maps.lesion[:, :, z], "brain": maps.brain[:, :, z],
               "score": maps.anomaly[:, :, z], "threshold": calibration["threshold"]}
    return calibration, outputs, summarise_method(template, n_resamples=0), example


def _summary_over_seeds(runs: list[list[OutputScore]], template: list[dict], seed: int) -> dict:
    """Each figure's mean and SD over seeds, and its 95 % CI over subjects and seeds."""
    per_seed = [summarise_outputs(run) for run in runs]
    cis = seed_subject_cis(runs, summarise_outputs, n_resamples=1000, seed=seed)
    out = {key: {"mean": float(np.mean([p[key] for p in per_seed])),
                 "sd": float(np.std([p[key] for p in per_seed])), "ci": list(cis.get(key, (np.nan, np.nan)))}
           for key in OUTPUT_FIGURES}
    for key in TEMPLATE_FIGURES:
        values = [np.nan if t[key] is None else t[key] for t in template]  # null in JSON: NaN
        out[f"template_{key}"] = {"mean": float(np.mean(values)), "sd": float(np.std(values))}
    out["patients"], out["controls"] = per_seed[0]["patients"], per_seed[0]["controls"]
    return out


def run_method(work_dir: Path, spec: MethodSpec, out_dir: Path, overrides: dict[str, Any] | None = None,
               device: str = "cpu", on_event: Progress | None = None,
               on_step: Callable[[int, int, float], None] | None = None, seeds: Sequence[int] = (0, 1, 2),
               tune_seeds: Sequence[int] = (0,), model_root: Path | None = None, samples: int | None = None) -> dict:
    """Train, tune on validation, then test with every seed; each seed cached in OUT/methods/<name>/.
    ``overrides`` (``--set``) and ``samples`` (``--samples``) apply to every point; ``model_root``: use the
    networks there (trained on another dataset; an unpacked archive or a work folder) as they are, instead
    of WORK_DIR's own: the generalisation row."""
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    model_root = Path(model_root) if model_root else work_dir
    if model_root != work_dir:
        require_same_preprocessing(work_dir, model_root)
    base = deep_update(spec.overrides, overrides or {})
    cfg0 = with_samples(method_config(work_dir, spec, overrides), samples)
    grid = _grid(spec)
    checkpoints = grid_networks(model_root, cfg0, grid, model_root == work_dir, device, on_event, on_step)
    split_sha = _sha256(workdir.splits_file(work_dir))
    tune_dir = out_dir / "tune" / f"{spec.name}-{_fingerprint(cfg0, checkpoints, split_sha)[:12]}"
    if on_event:
        on_event("tune", spec.name)
    tuned = tune(work_dir, grid, list(tune_seeds), tune_dir, base=base, device=device,
                 on_point=(lambda label, seed, row: on_event("point", f"{spec.name} {label}")) if on_event else None,
                 model_root=model_root, samples=samples)
    chosen = tuned["chosen"]["overrides"]
    cfg = with_overrides(cfg0, chosen, "chosen on validation")
    detector = None  # the chosen settings' networks, loaded once for every seed that runs
    unit, z = example_slice(work_dir)
    records, runs = [], []
    method_dir = out_dir / "methods" / spec.name
    for seed in seeds:
        cfg_s = with_overrides(cfg, {"seed": seed}, "seed")
        used = {name: checkpoints[name] for name in
                (model_name(kind, cfg_s) for kind in required_models(cfg_s))}
        key = _fingerprint(cfg_s, used, split_sha)
        record_path, hist_path = method_dir / f"seed-{seed}.json", method_dir / f"seed-{seed}_hist.npz"
        if record_path.is_file() and hist_path.is_file():
            cached = json.loads(record_path.read_text())
            if cached.get("fingerprint") == key:
                records.append(cached)
                runs.append(load_scores(cached["per_subject"], hist_path))
                continue
        if on_event:
            on_event("method", f"{spec.name} seed {seed}")
        detector = detector or Detector.for_config(model_root, cfg, data_dir=work_dir)
        started = time.perf_counter()
        calibration, outputs, template, example = _seed_run(work_dir, detector.with_config(cfg_s),
                                                            out_dir / "derivatives" / spec.name / f"seed-{seed}",
                                                            device, on_event, (unit, z),
                                                            tuned["calibrations"].get(seed))
        if seed == seeds[0]:
            write_with_atomic(method_dir / "example.npz", lambda tmp: np.savez_compressed(tmp, **example),
                              suffix=".npz")
        record = {"seed": seed, "fingerprint": key, "commit": source_commit(), "machine": machine(),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.perf_counter() - started,
                  "checkpoints": used,
                  "calibration": {k: calibration[k] for k in ("threshold", "val_dice", "val_auprc", "chosen_on")},
                  "outputs": summarise_outputs(outputs), "template": template,
                  "per_subject": [s.row() for s in outputs]}
        save_histograms(hist_path, outputs)
        write_json_atomic(record_path, json_safe(record))
        records.append(record)
        runs.append(outputs)
    config_path = out_dir / "configs" / f"{spec.name}.yaml"
    save_config(cfg, config_path)
    pooled = [s for run in runs for s in run]
    result = {
        "name": spec.name, "role": spec.role, "title": spec.title,
        "grid": {"axes": list(spec.grid), "source": spec.grid_source, "rule": tuned["rule"],
                 "points": tuned["points"], "chosen": tuned["chosen"]["point"], "tune_seeds": list(tune_seeds)},
        "seeds": list(seeds),
        "metrics": _summary_over_seeds(runs, [r["template"] for r in records], cfg.seed),
        "strata": stratified(pooled),
        "per_seed": [{k: r[k] for k in ("seed", "calibration", "outputs", "template")} for r in records],
        "per_subject": [{"seed": r["seed"], **row} for r in records for row in r["per_subject"]],
        "pr_curve": pr_curve(pooled),
        "example": {"participant_id": unit, "z": z},
        "provenance": {"config": str(config_path.relative_to(out_dir)), "config_sha256": _sha256(config_path),
                       "checkpoints": {k: v for r in records for k, v in r["checkpoints"].items()},
                       "split": workdir.SPLITS, "split_sha256": split_sha,
                       "test_subjects": [s.unit for s in runs[0]], "validation_subjects":
                           records[0]["calibration"]["chosen_on"], "seeds": list(seeds),
                       "commit": source_commit(), "code_sha256": package_digest(), "version": __version__,
                       # the commits that computed the (cached) seed runs; their code agrees outside PRESENTATION_CODE
                       "computed_by": sorted({r.get("commit", "unknown") for r in records}),
                       # where and how long (records made before these were kept have none)
                       "machines": sorted({r["machine"]["processor"] for r in records if "machine" in r}),
                       "finished": max((r["finished"] for r in records if "finished" in r), default=None),
                       "seconds": {"sweep": recorded_total(p["seconds"] for p in tuned["points"]),
                                   "seeds": recorded_total(r.get("seconds") for r in records)}},
    }
    write_json_atomic(method_dir.with_suffix(".json"), json_safe(result))
    if on_event:
        on_event("done", spec.name)
    return result


def run_benchmark(work_dir: Path, methods: list[MethodSpec], out_dir: Path, overrides: dict[str, Any] | None = None,
                  device: str = "cpu", on_event: Progress | None = None,
                  on_step: Callable[[int, int, float], None] | None = None, seeds: Sequence[int] = (0, 1, 2),
                  tune_seeds: Sequence[int] = (0,), transfer: Path | None = None,
                  samples: int | None = None) -> list[dict]:
    """Every method in turn (see ``run_method``), each followed by the table and figures so far
    (``evaluation.report``); ``samples``: N draws (``--samples``) for every method. ``transfer``: a model trained on other subjects (work folder or MODEL.zip),
    scored after the methods as ``full_transfer`` without retraining (``methods.transfer_spec``)."""
    from pseudohealthy.bundle.archive import opened_model
    from pseudohealthy.evaluation.report import write_report

    work_dir, out_dir = Path(work_dir), Path(out_dir)
    if not workdir.config_file(work_dir).is_file() or not workdir.splits_file(work_dir).is_file():
        raise UserError(f"{work_dir}: not a prepared work folder; run `pseudohealthy prepare BIDS_DIR {work_dir}` "
                        "or pass --bids BIDS_DIR")
    (out_dir / "methods").mkdir(parents=True, exist_ok=True)
    example_slice(work_dir)  # fail early, before any training, when there is no test patient
    if transfer is not None:  # and before hours of methods, when the other model cannot be used here
        with opened_model(transfer) as model_root:
            require_same_preprocessing(work_dir, model_root)
            spec = transfer_spec(transfer)
            cfg = with_samples(method_config(work_dir, spec, overrides), samples)
            grid_networks(model_root, cfg, _grid(spec), trainable=False)
    results = []
    for spec in methods:  # the table is rewritten after each method: a long run has a readable partial table
        results.append(run_method(work_dir, spec, out_dir, overrides, device, on_event, on_step, seeds, tune_seeds,
                                  samples=samples))
        write_report(results, out_dir, work_dir)
    if transfer is not None:
        with opened_model(transfer) as model_root:
            results.append(run_method(work_dir, transfer_spec(transfer), out_dir, overrides, device, on_event,
                                      on_step, seeds, tune_seeds, model_root=model_root, samples=samples))
        write_report(results, out_dir, work_dir)
    return results


def stored_results(out_dir: Path, methods: list[MethodSpec]) -> list[dict]:
    """The finished methods among ``methods`` as the benchmark stored them (``OUT/methods/<name>.json``), in the
    run's order, then the generalisation row when there is one: what ``--report-only`` writes the tables from."""
    paths = [Path(out_dir) / "methods" / f"{name}.json" for name in [spec.name for spec in methods] + [TRANSFER_NAME]]
    results = [json.loads(path.read_text()) for path in paths if path.is_file()]
    for result in results:  # stored with NaN as null
        result["metrics"] = nan_for_null(result["metrics"])
    if not results:
        raise UserError(f"{out_dir}: no finished method of those selected; run `pseudohealthy benchmark` first")
    return results
