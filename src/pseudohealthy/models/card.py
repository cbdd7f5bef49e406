"""The model card: what a model is, what it was trained on and how it scored on validation subjects.

Written into every exported archive (JSON for programs, Markdown for people) and summarised in the
detection report, so a reader of a result knows which model made it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import torch

from pseudohealthy import __version__, workdir
from pseudohealthy.config import Config
from pseudohealthy.data.bids import unit_subject
from pseudohealthy.data.labels import CLASS_NAMES
from pseudohealthy.data.splits import read_splits
from pseudohealthy.models.checkpoint import load_checkpoint
from pseudohealthy.models.trained import model_dir, required_models

PHANTOM_GENERATOR = "pseudohealthy phantom"


def _source_dataset(work_dir: Path) -> dict:
    """Name of the BIDS dataset the work folder was prepared from, and whether our phantom made it."""
    for meta_path in sorted(workdir.subjects_dir(work_dir).glob(f"*/{workdir.META}")):
        t1w = json.loads(meta_path.read_text()).get("inputs", {}).get("t1w")
        if not t1w:
            continue
        description = Path(t1w).parents[2] / "dataset_description.json"
        if description.is_file():
            info = json.loads(description.read_text(encoding="utf-8-sig"))
            generators = [g.get("Name", "") for g in info.get("GeneratedBy", []) if isinstance(g, dict)]
            return {"name": info.get("Name", "unknown"), "synthetic": PHANTOM_GENERATOR in generators}
        break
    return {"name": "unknown (source dataset not found)", "synthetic": None}


def _training_data(work_dir: Path) -> dict:
    rows = read_splits(work_dir)  # one row per unit: a subject, or one session of it
    first_units = {}  # subject -> (its first unit, group, role): sessions are not counted as subjects
    for unit, group, role in rows:
        first_units.setdefault(unit_subject(unit), (unit, group, role))
    per_role = Counter(f"{role} {'patients' if group == 'fcd' else 'controls'}"
                       for _, group, role in first_units.values())
    if len(first_units) < len(rows):
        per_role["sessions (all roles)"] = len(rows)
    lobes: Counter = Counter()
    for unit, group, role in first_units.values():
        meta = workdir.meta_file(workdir.subject_dir(work_dir, unit))
        if role == "train" and group == "fcd" and meta.is_file():
            lobes[CLASS_NAMES.get(int(json.loads(meta.read_text()).get("label") or 0), "unknown")] += 1
    return {"subjects": dict(sorted(per_role.items())), "training_patient_lobes": dict(sorted(lobes.items()))}


def model_card(work_dir: Path, cfg: Config, calibration: dict) -> dict:
    networks = {}
    for kind in required_models(cfg):
        path = workdir.checkpoint_file(model_dir(work_dir, kind, cfg))
        ckpt = load_checkpoint(path, expect_kind=kind)
        networks[path.parent.name] = {"kind": kind, "steps": int(ckpt["step"]),
                                      "final_metrics": ckpt.get("metrics", {})}
    return {
        "preset": cfg.name,
        "method": {"detector": cfg.method.detector, "condition": cfg.method.condition,
                   "guidance": cfg.method.guidance, "noise_level": cfg.diffusion.noise_level,
                   "steps": cfg.diffusion.steps, "eta": cfg.diffusion.eta, "samples": calibration.get("samples", 1),
                   "reinsert": cfg.diffusion.reinsert, "normative": cfg.method.normative,
                   "image_size": cfg.data.image_size, "template_voxel_mm": cfg.data.template_voxel_mm},
        "training_data": {"source": _source_dataset(work_dir), **_training_data(work_dir)},
        "networks": networks,
        "validation": {k: calibration.get(k) for k in ("threshold", "val_dice", "val_auprc", "val_patients")}
        | {"subjects": len(calibration.get("chosen_on", []))},
        "package_version": __version__,
        "torch_version": torch.__version__,
        "exported": time.strftime("%Y-%m-%d"),
    }


def card_summary(card: dict) -> str:
    """One paragraph for the report: preset, training data, validation figures, and a synthetic-data warning."""
    data = card["training_data"]
    subjects = ", ".join(f"{n} {what}" for what, n in data["subjects"].items())
    steps = ", ".join(f"{name} {net['steps']} steps" for name, net in card["networks"].items())
    val = card["validation"]
    text = (f"preset {card['preset']} ({steps}); trained on {data['source']['name']} ({subjects}); "
            f"threshold chosen on {val['subjects']} validation subjects (Dice {val['val_dice']:.3f}, "
            f"pixel AUPRC {val['val_auprc']:.3f}); pseudohealthy {card['package_version']}")
    if data["source"]["synthetic"]:
        text += (". WARNING: this model was trained on synthetic phantom data only; its output on real scans "
                 "means nothing until it is retrained on real data")
    return text


def model_card_markdown(card: dict) -> str:
    lines = [f"# pseudohealthy model card: preset {card['preset']}", "", card_summary(card) + ".", "",
             "## Method", ""]
    lines += [f"- {k}: {v}" for k, v in card["method"].items()]
    lines += ["", "## Training data", "", f"- source: {card['training_data']['source']['name']}",
              f"- synthetic: {card['training_data']['source']['synthetic']}"]
    lines += [f"- {what}: {n}" for what, n in card["training_data"]["subjects"].items()]
    lines += [f"- training patients with lesion class {lobe}: {n}"
              for lobe, n in card["training_data"]["training_patient_lobes"].items()]
    lines += ["", "## Networks", ""]
    lines += [f"- {name} ({net['kind']}): {net['steps']} steps; final metrics "
              + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in net["final_metrics"].items())
              for name, net in card["networks"].items()]
    lines += ["", "## Validation (threshold chosen here, never on test subjects)", ""]
    lines += [f"- {k}: {v}" for k, v in card["validation"].items()]
    lines += ["", f"pseudohealthy {card['package_version']}, torch {card['torch_version']}, exported {card['exported']}.",
              "Research software: not a medical device.", ""]
    return "\n".join(lines)
