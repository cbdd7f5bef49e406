"""The synthetic dataset: plan subjects, render them (in parallel), write the BIDS files.

The layout and quirks follow ds004199 (shared/docs/DATASET.md): UTF-8 BOM and some CRLF rows in
participants.tsv, ``n/a``, several acq labels, one lesion mask whose acq label differs from its
FLAIR's, one subject with an extra thick-slice 2D FLAIR, T1 and FLAIR on different grids with a
small rigid misalignment, heads not skull-stripped; with three controls or more, the last control
is scanned in two sessions (``sub-X/ses-1``, ``sub-X/ses-2``), as follow-up scans are.
Ground truth goes outside the BIDS tree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from pseudohealthy import __version__
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import atomic_directory, write_json_atomic, write_text_atomic
from pseudohealthy.phantom import artefacts
from pseudohealthy.phantom.fcd_range import grade_lesions
from pseudohealthy.phantom.lesion import LesionSpec
from pseudohealthy.phantom.normal_variants import plan_frontal_caps
from pseudohealthy.phantom.realism import Realism, stream
from pseudohealthy.phantom.subject import (
    FLAIR_WEIGHTS,
    T1_WEIGHTS,
    THICK_FLAIR_PROTOCOLS,
    SubjectPlan,
    render_subject,
)

GENERATOR_NAME = "pseudohealthy phantom"
# Lobe strings among ds004199's patients and their counts.
LOBE_FREQUENCIES = {"FL": 54, "PL": 15, "TL": 5, "IL": 3, "TL,OL": 3, "TL,PL": 2, "OL": 2, "FL,PL": 1}
PARTICIPANT_COLUMNS = ["participant_id", "age", "sex", "group", "hemisphere", "lobe", "histopathology", "split"]


def _weighted_choice(rng: np.random.Generator, weights: dict[str, int]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


# Small, subtle lesions (the FCDs that are missed in practice) of the legacy plan: radius and contrast ranges of
# the lesion spec at the low end of the usual draws (radius 5-12 mm, contrast 0.25-1). They give under 1 cm3;
# the FLAIR contrast ratio measured against the surrounding shell also depends on what surrounds the lesion
# (legacy benchmark phantom, seed 2: 1.09-1.37, three of four below 1.16). The realistic plan makes them
# under 1 cm3 and faint (< 1.10) by design (fcd_range.py).
SUBTLE_RADIUS_MM = (4.0, 4.8)
SUBTLE_CONTRAST = (0.25, 0.4)


def plan_dataset(n_patients: int, n_controls: int, seed: int, subtle_test_share: float = 0.0,
                 test_share: float = 1 / 3, realism: Realism | None = None) -> list[SubjectPlan]:
    """Decide every subject's group, labels, acquisitions and lesion, deterministically from ``seed``.

    ``realism`` (default: realistic, every confound): a legacy plan is the plan of the generator before
    confounds; a realistic one is the same plan with the confounds named, the field strength, caps as
    frequent in patients as in controls, and (``fcd_range``) each lesion's intended volume and FLAIR
    contrast (phantom/fcd_range.py), each drawn from a stream of its own.

    ``test_share``: the share of patients marked ``test`` in participants.tsv (ds004199 marks about a
    third). Changing it changes the split column and, in a realistic plan, the intended volume and contrast
    of test lesions (re-graded so that the test split holds every stratum: fcd_range.grade_lesions);
    nothing else, and no training lesion.

    ``subtle_test_share``: at least this share of the suggested test patients get a small, subtle lesion
    (legacy: ``SUBTLE_RADIUS_MM``, ``SUBTLE_CONTRAST``; realistic: under 1 cm³ and faint), drawn from streams
    of their own. Changing it changes those lesions and, in a realistic plan, may re-grade other test
    lesions; nothing else, and no training lesion.
    """
    if n_patients < 0 or n_controls < 0 or n_patients + n_controls == 0:
        raise UserError("phantom: ask for at least one subject (--patients N and/or --controls M)")
    if not 0.0 <= subtle_test_share <= 1.0:
        raise UserError(f"phantom: --subtle-test-share {subtle_test_share} must lie between 0 and 1")
    if not 0.0 <= test_share <= 1.0:
        raise UserError(f"phantom: --test-share {test_share} must lie between 0 and 1")
    rng = np.random.default_rng(seed)
    groups = np.array(["fcd"] * n_patients + ["hc"] * n_controls)
    rng.shuffle(groups)
    patient_idx = [i for i, g in enumerate(groups) if g == "fcd"]
    n_test = math.ceil(len(patient_idx) * test_share - 1e-9)  # 1e-9: a third of 30 is 10, not 11
    test_patients = set(rng.permutation(patient_idx)[:n_test].tolist())
    subtle_rng = np.random.default_rng([seed, 1])
    subtle = set(subtle_rng.permutation(sorted(test_patients))[: math.ceil(subtle_test_share * len(test_patients))]
                 .tolist())
    mismatch = patient_idx[0] if patient_idx else None
    thick = patient_idx[1] if len(patient_idx) > 1 else 0
    control_idx = [i for i, g in enumerate(groups) if g == "hc"]
    rescanned = control_idx[-1] if len(control_idx) >= 3 else None  # one control with two sessions
    plans = []
    for i, group in enumerate(groups):
        pid = f"sub-{i + 1:05d}"
        patient = group == "fcd"
        t1_acq = _weighted_choice(rng, T1_WEIGHTS)
        flair_acq = "T2sel" if i == mismatch else _weighted_choice(rng, FLAIR_WEIGHTS)
        lesion = histo = None
        if patient:
            histo = str(rng.choice(["FCD IIa", "FCD IIb"]))
            lesion = LesionSpec(
                lobes=tuple(_weighted_choice(rng, LOBE_FREQUENCIES).split(",")),
                hemisphere=str(rng.choice(["L", "R"])),
                radius_mm=float(np.exp(rng.uniform(np.log(5.0), np.log(12.0)))),
                contrast=float(rng.uniform(0.25, 1.0)),
                transmantle=histo == "FCD IIb" and bool(rng.random() < 0.7),
            )
            if i in subtle:
                lesion = replace(lesion, radius_mm=float(subtle_rng.uniform(*SUBTLE_RADIUS_MM)),
                                 contrast=float(subtle_rng.uniform(*SUBTLE_CONTRAST)), transmantle=False)
        plans.append(SubjectPlan(
            index=i,
            participant_id=pid,
            group=str(group),
            age=None if rng.random() < 0.12 else int(rng.integers(4, 60)),
            sex=str(rng.choice(["M", "F"])),
            split="test" if i in test_patients else "train",
            t1_acq=t1_acq,
            flair_acq=flair_acq,
            mask_acq=("tse3dvfl" if i == mismatch else flair_acq) if patient else None,
            thick_flair_acq=next(iter(THICK_FLAIR_PROTOCOLS)) if i == thick else None,
            lesion=lesion,
            histopathology=histo,
            caps=bool(rng.random() < (0.25 if patient else 0.5)),
            sessions=2 if i == rescanned else 1,
            realism="legacy",  # the plan before confounds; _realistic adds them
            confounds=(),
        ))
    realism = Realism() if realism is None else realism
    return plans if realism.mode == "legacy" else _realistic(plans, seed, realism, subtle)


def _realistic(plans: list[SubjectPlan], seed: int, realism: Realism, subtle: set[int]) -> list[SubjectPlan]:
    confounds = realism.confounds
    graded = {}
    if "fcd_range" in confounds:
        lesions = {p.index: (p.lesion, p.histopathology) for p in plans if p.lesion is not None}
        graded = grade_lesions(lesions, {p.index for p in plans if p.split == "test" and p.lesion}, subtle, seed)
    out = []
    for p in plans:
        one_five = ("field_strength" in confounds
                    and ("field_strength" in realism.always or stream(seed, p.index, "field_strength").random()
                         < artefacts.P_1P5T))
        out.append(replace(
            p, realism="realistic", confounds=confounds, always=tuple(sorted(realism.always)),
            field_strength_t=1.5 if one_five else 3.0, lesion=graded.get(p.index, p.lesion),
            caps="periventricular" in confounds and ("periventricular" in realism.always
                                                     or plan_frontal_caps(seed, p.index))))
    return out


def _na(value) -> str:
    return "n/a" if value is None else str(value)


def participants_tsv(plans: list[SubjectPlan]) -> str:
    """participants.tsv text with ds004199's quirks: UTF-8 BOM (added on write) and CRLF on some rows."""
    lines = ["\t".join(PARTICIPANT_COLUMNS) + "\n"]
    for p in plans:
        row = [p.participant_id, _na(p.age), p.sex, p.group, _na(p.lesion.hemisphere if p.lesion else None),
               _na(p.lobe), _na(p.histopathology), p.split]
        ending = "\r\n" if p.index % 3 == 1 else "\n"
        lines.append("\t".join(row) + ending)
    return "".join(lines)


PARTICIPANTS_JSON = {
    "age": {"Description": "age at scan", "Units": "year"},
    "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
    "group": {"Description": "diagnostic group", "Levels": {"fcd": "FCD type II patient", "hc": "healthy control"}},
    "hemisphere": {"Description": "hemisphere of the lesion", "Levels": {"L": "left", "R": "right"}},
    "lobe": {"Description": "lobe(s) of the lesion: FL, PL, TL, OL, IL or two joined by a comma"},
    "histopathology": {"Description": "histopathological diagnosis"},
    "split": {"Description": "suggested train/test split", "Levels": {"train": "training", "test": "testing"}},
}


def _write_dataset_files(root: Path, plans: list[SubjectPlan], seed: int) -> None:
    write_json_atomic(root / "dataset_description.json", {
        "Name": f"pseudohealthy synthetic FCD type II dataset (seed {seed})",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["pseudohealthy phantom generator"],
        "GeneratedBy": [{"Name": GENERATOR_NAME, "Version": __version__}],
    })
    write_text_atomic(root / "README", (
        "Synthetic look-alike of the Bonn FCD type II dataset (OpenNeuro ds004199), made by\n"
        f"`pseudohealthy phantom` with seed {seed}. Anatomy from the MNI152 template; lesions are\n"
        "simulated. Not real patients. Lesion masks are *_FLAIR_roi.nii.gz in the FLAIR's space.\n"
    ))
    write_text_atomic(root / "CHANGES", "1.0.0 synthetic\n  - generated by pseudohealthy phantom\n")
    write_text_atomic(root / ".bidsignore", "*_roi.nii.gz\n")
    write_text_atomic(root / "participants.tsv", participants_tsv(plans), encoding="utf-8-sig", newline="\n")
    write_json_atomic(root / "participants.json", PARTICIPANTS_JSON)


def _is_our_dataset(path: Path) -> bool:
    try:
        desc = json.loads((path / "dataset_description.json").read_text(encoding="utf-8-sig"))
        return any(g.get("Name") == GENERATOR_NAME for g in desc.get("GeneratedBy", []))
    except (OSError, ValueError, AttributeError):
        return False


def _render_one(args: tuple[SubjectPlan, int, str, str]) -> dict:
    plan, seed, root, truth_dir = args
    return render_subject(plan, seed, Path(root), Path(truth_dir))


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an earlier dataset of this generator (and only with ``overwrite``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder; choose another output folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise UserError(f"{out_dir} already exists and is not empty; choose another folder or pass --overwrite")
        if not _is_our_dataset(out_dir):
            raise UserError(f"{out_dir} is not a dataset made by the phantom generator; refusing to replace it")


def default_truth_dir(bids_dir: Path) -> Path:
    """Ground truth lives beside the dataset, outside the BIDS tree."""
    bids_dir = Path(bids_dir).absolute()
    return bids_dir.with_name(bids_dir.name + "_truth")


def generate_dataset(out_dir: Path, n_patients: int, n_controls: int, seed: int, jobs: int = 1,
                     truth_dir: Path | None = None, overwrite: bool = False,
                     progress: Callable[[str], None] | None = None, subtle_test_share: float = 0.0,
                     test_share: float = 1 / 3, realism: Realism | None = None) -> dict:
    """Make the dataset in a temporary folder and move it to ``out_dir`` when complete.

    Returns the ground truth (also written to ``truth_dir/truth.json``, default ``<out_dir>_truth``,
    with each subject's deformation under ``truth_dir/geometry``).
    An existing ``out_dir`` is replaced only with ``overwrite`` and only if this generator made it.
    ``realism``: see :func:`plan_dataset` (default: the realistic generator with every confound).
    """
    out_dir = Path(out_dir).absolute()
    truth_dir = Path(truth_dir).absolute() if truth_dir else default_truth_dir(out_dir)
    check_output_dir(out_dir, overwrite)
    realism = Realism() if realism is None else realism
    plans = plan_dataset(n_patients, n_controls, seed, subtle_test_share, test_share, realism)
    with atomic_directory(out_dir) as staging:
        _write_dataset_files(staging, plans, seed)
        work = [(p, seed, str(staging), str(truth_dir)) for p in plans]
        truths: list[dict] = []
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for truth in pool.map(_render_one, work):
                    truths.append(truth)
                    if progress:
                        progress(truth["participant_id"])
        else:
            for item in work:
                truths.append(_render_one(item))
                if progress:
                    progress(truths[-1]["participant_id"])
    truth = {"generator": GENERATOR_NAME, "version": __version__, "seed": seed, "bids_dir": str(out_dir),
             "subtle_test_share": subtle_test_share, "test_share": test_share, "realism": realism.record(),
             "subjects": truths}
    write_json_atomic(truth_dir / "truth.json", truth)
    return truth
