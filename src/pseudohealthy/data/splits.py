"""Subject-level splits (never slice-level).

Rule, deterministic for a seed:
- patients whose ``split`` is ``test`` are test patients; of the others a fraction
  (``val_patient_fraction``, at least one when there are two or more) becomes validation;
- controls whose ``split`` is ``test`` are test controls; ds004199 puts every control in ``train``,
  so fractions of the rest are held out as validation controls and test controls (for
  specificity), at least one each when there are three or more;
- the choice is a seeded permutation of the sorted ids, so adding a subject changes little;
- roles belong to subjects: every session of a subject gets its subject's role (no leakage across sessions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pseudohealthy import workdir
from pseudohealthy.config.schema import DataConfig

ROLES = ("train", "val", "test")


def _take(ids: list[str], fraction: float, minimum: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    n = max(minimum, int(round(fraction * len(ids)))) if ids else 0
    order = [ids[i] for i in rng.permutation(len(ids))]
    return sorted(order[:n]), sorted(order[n:])


def assign_roles(units: list[dict], cfg: DataConfig, seed: int) -> dict[str, str]:
    """``units``: dicts with participant_id (the unit: ``sub-X`` or ``sub-X_ses-Y``), optional subject (the
    ``sub-X`` it belongs to, default participant_id), group and split. Returns unit -> role."""
    subject_of = {u["participant_id"]: u.get("subject") or u["participant_id"] for u in units}
    subjects = list({subject_of[u["participant_id"]]: {**u, "participant_id": subject_of[u["participant_id"]]}
                     for u in units}.values())
    by_subject = _subject_roles(subjects, cfg, seed)
    return {unit: by_subject[subject] for unit, subject in subject_of.items()}


def _subject_roles(subjects: list[dict], cfg: DataConfig, seed: int) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    roles: dict[str, str] = {}
    for group in ("fcd", "hc"):
        members = sorted(s["participant_id"] for s in subjects if s["group"] == group)
        declared_test = [s["participant_id"] for s in subjects if s["group"] == group and s.get("split") == "test"]
        pool = [m for m in members if m not in declared_test]
        roles.update({pid: "test" for pid in declared_test})
        if group == "fcd":
            val, train = _take(pool, cfg.val_patient_fraction, 1 if len(pool) >= 2 else 0, rng)
            test_extra: list[str] = []
        else:
            minimum = 1 if len(pool) >= 3 else 0
            val, rest = _take(pool, cfg.val_control_fraction, minimum, rng)
            test_extra, train = _take(rest, cfg.test_control_fraction, minimum if not declared_test else 0, rng)
        roles.update({pid: "val" for pid in val})
        roles.update({pid: "test" for pid in test_extra})
        roles.update({pid: "train" for pid in train})
    return roles


def read_splits(work_dir: Path) -> list[tuple[str, str, str]]:
    """(participant_id, group, role) rows of WORK_DIR/splits.tsv, as ``prepare`` wrote them."""
    path = workdir.splits_file(work_dir)
    return [tuple(line.split("\t")[:3]) for line in path.read_text().splitlines()[1:] if line.strip()]


def training_controls(work_dir: Path) -> list[str]:
    """The controls WORK_DIR/splits.tsv gives the train role: what control statistics are fitted on."""
    return [pid for pid, group, role in read_splits(work_dir) if group == "hc" and role == "train"]


def roles(work_dir: Path) -> dict[str, str]:
    """participant_id -> train | val | test, from WORK_DIR/splits.tsv."""
    return {pid: role for pid, _, role in read_splits(work_dir)}
