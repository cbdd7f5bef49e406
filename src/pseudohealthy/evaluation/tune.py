"""``tune``: choose inference settings by a grid sweep on the validation subjects only.

Every point of the grid (the product of ``--grid KEY=V1,V2,...`` options) is run on the validation
patients and controls of ``splits.tsv`` for each seed, with the same trained models; its threshold
is chosen there as ``calibrate`` would, and it is scored there (pooled pixel AUPRC of the validation
patients, mean Dice at that threshold). The chosen point has the best mean validation AUPRC over
seeds; among points within one seed-SD of the best, the one listed first in the grid (put the cheaper
value first). Test subjects are never read. Results go to ``OUT/grid.tsv``, ``OUT/grid.json`` and the
chosen overrides to ``OUT/chosen.yaml``; points already in ``grid.json`` are not run again. The chosen
point's calibrations are returned too, so the benchmark's test runs do not repeat its validation runs.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pseudohealthy import workdir
from pseudohealthy.config import load_work_config, with_overrides
from pseudohealthy.config.loader import deep_update
from pseudohealthy.data.splits import roles
from pseudohealthy.detect.calibration import analyse_role, calibration_from
from pseudohealthy.detect.detector import Detector, with_samples
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.run import parse_settings
from pseudohealthy.io.atomic import write_json_atomic, write_text_atomic

METRICS = ("val_auprc", "val_dice")


def parse_grid(items: list[str]) -> list[dict[str, Any]]:
    """``["diffusion.noise_level=100,200", "diffusion.eta=0,1"]`` -> the product as nested override dicts,
    in the order given (the first value of each key varies slowest)."""
    if not items:
        raise UserError("tune needs at least one --grid KEY=V1,V2,... (e.g. --grid diffusion.noise_level=100,200)")
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise UserError(f"--grid {item!r}: expected SECTION.KEY=V1,V2,..., e.g. diffusion.noise_level=100,200")
        axes.append([f"{key}={value}" for value in values.split(",")])
    return [parse_settings(list(point)) for point in itertools.product(*axes)]


def _label(overrides: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            parts.append(_label(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={value}")
    return " ".join(parts)


def tune(work_dir: Path, grid: list[dict[str, Any]], seeds: list[int], out_dir: Path | None = None,
         base: dict[str, Any] | None = None, device: str = "cpu",
         on_point: Callable[[str, int, dict], None] | None = None, model_root: Path | None = None,
         samples: int | None = None) -> dict:
    """Run every grid point for every seed on the validation subjects; write and return the table and
    the choice. ``base``: overrides applied under every point (``--set``), then ``samples`` (``--samples``);
    ``model_root``: the networks come from there (another work folder or an unpacked model archive), not
    from WORK_DIR."""
    work_dir = Path(work_dir)
    model_root = Path(model_root) if model_root else work_dir
    cfg0 = with_samples(with_overrides(load_work_config(work_dir), base or {}, "--grid"), samples)
    if "val" not in roles(work_dir).values():
        raise UserError(f"{work_dir}: no validation subjects in splits.tsv; add subjects and re-run prepare")
    out_dir = Path(out_dir) if out_dir else workdir.tune_dir(work_dir)
    done = {(r["point"], r["seed"]): r for r in _load(out_dir / "grid.json")}
    rows = []
    detector = None  # one set of networks at a time, kept while the points read the same model folders
    for overrides in grid:
        label = _label(overrides)
        for seed in seeds:
            if (label, seed) in done:
                rows.append(done[(label, seed)])
                continue
            cfg = with_overrides(cfg0, deep_update(overrides, {"seed": seed}), "--grid")
            detector = (detector.with_config(cfg) if detector
                        else Detector.for_config(model_root, cfg, data_dir=work_dir))
            started = time.perf_counter()
            calibration = calibration_from(analyse_role(work_dir, "val", detector.models, cfg, device), cfg)
            row = {"point": label, "overrides": overrides, "seed": seed, "threshold": calibration["threshold"],
                   "val_auprc": calibration["val_auprc"], "val_dice": calibration["val_dice"],
                   "subjects": calibration["chosen_on"], "calibration": calibration,
                   "seconds": time.perf_counter() - started}
            rows.append(row)
            _save(out_dir, rows)
            if on_point:
                on_point(label, seed, row)
    result = _choose(rows, grid)
    _save(out_dir, rows, result)
    # The chosen point's calibration per seed: a caller that scores the test set with the same settings and seed
    # uses it instead of running the validation subjects again (same config and seed, same maps).
    result["calibrations"] = {r["seed"]: r["calibration"] for r in rows
                              if r["point"] == result["chosen"]["point"] and "calibration" in r}
    return result


def recorded_total(seconds) -> float | None:
    """The sum of the recorded durations (None entries: runs stored before timing was kept); None if none was."""
    known = [v for v in seconds if v is not None]
    return float(sum(known)) if known else None


def _choose(rows: list[dict], grid: list[dict[str, Any]]) -> dict:
    points = []
    for overrides in grid:
        label = _label(overrides)
        mine = [r for r in rows if r["point"] == label]
        values = {m: [r[m] for r in mine] for m in METRICS}
        points.append({"point": label, "overrides": overrides, "seeds": [r["seed"] for r in mine],
                       "seconds": recorded_total(r.get("seconds") for r in mine),
                       **{f"{m}_mean": float(np.mean(values[m])) for m in METRICS},
                       **{f"{m}_sd": float(np.std(values[m])) for m in METRICS}})
    scored = [p for p in points if np.isfinite(p["val_auprc_mean"])]
    if not scored:  # no validation patient: nothing to choose by, keep the first (preset or authors') point
        return {"rule": "no validation patient, so no AUPRC: the first grid point", "points": points,
                "chosen": points[0]}
    best = max(scored, key=lambda p: p["val_auprc_mean"])
    chosen = next(p for p in scored if p["val_auprc_mean"] >= best["val_auprc_mean"] - best["val_auprc_sd"])
    return {"rule": "best mean validation AUPRC; the first grid point within one seed-SD of it",
            "points": points, "chosen": chosen}


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def _save(out_dir: Path, rows: list[dict], result: dict | None = None) -> None:
    payload = {"rows": rows, **(result or {})}
    write_json_atomic(out_dir / "grid.json", payload)
    lines = ["point\tseed\tthreshold\tval_auprc\tval_dice"] + [
        f"{r['point']}\t{r['seed']}\t{r['threshold']:.6g}\t{r['val_auprc']:.4f}\t{r['val_dice']:.4f}" for r in rows]
    write_text_atomic(out_dir / "grid.tsv", "\n".join(lines) + "\n")
    if result:
        write_text_atomic(out_dir / "chosen.yaml", yaml.safe_dump(result["chosen"]["overrides"], sort_keys=False))
