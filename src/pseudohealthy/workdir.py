"""The work folder's layout: every path inside WORK_DIR is made here.

    WORK_DIR/
        config.yaml                 the resolved config it was prepared with (``prepare``)
        inventory.tsv               the inputs chosen per subject, and the subjects skipped with why
        splits.tsv                  unit, group and role (train | val | test) of every prepared unit
        subjects/<unit>/            one prepared unit (``sub-X`` or ``sub-X_ses-Y``): its template-grid
                                    volumes (<volume>.nii.gz), the transforms to its FLAIR and T1w, and
                                    meta.json, written last
        qc/<unit>_registration.png  registration and brain-mask check of each unit
        slices/                     the training slice cache: index.tsv and one <volume>.npy per volume
        models/<name>/              one trained network: checkpoint.pt, metrics.csv and its config.yaml
        calibration.json            the threshold chosen on the validation subjects (``calibrate``)
        normative/<key>.npz         the normative residual's statistics (``method.normative``), one file per
                                    setting of the draws they were fitted under (``models.trained.normative_key``)
        model_card.json             in an unpacked model archive only (a work folder's card is made afresh)
        tune/  evaluate/derivatives/  benchmark/    where ``tune``, ``evaluate`` and ``benchmark`` write
                                    when not told otherwise

A model archive keeps a trained model's files under these same names, so unpacked it reads as a work
folder; a prepared unit's folder is laid out the same wherever it lies (``detect`` prepares new subjects
under OUT_DIR/sourcedata/work).
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
INVENTORY = "inventory.tsv"
SPLITS = "splits.tsv"
CALIBRATION = "calibration.json"
NORMATIVE_DIR = "normative"
MODEL_CARD = "model_card.json"
# In a prepared unit's folder.
META = "meta.json"  # written last: its presence marks a finished unit
FLAIR_TO_T1 = "flair_to_t1.h5"
TEMPLATE_TO_T1 = "template_to_t1.h5"
# In a model's folder (beside its CONFIG).
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"


def config_file(folder: Path) -> Path:
    """WORK_DIR/config.yaml (or the config.yaml a model was trained with, in its folder)."""
    return Path(folder) / CONFIG


def inventory_file(work_dir: Path) -> Path:
    return Path(work_dir) / INVENTORY


def splits_file(work_dir: Path) -> Path:
    return Path(work_dir) / SPLITS


def calibration_file(work_dir: Path) -> Path:
    return Path(work_dir) / CALIBRATION


def normative_file(work_dir: Path, key: str) -> Path:
    """WORK_DIR/normative/<first 16 hex digits of key>.npz: a sweep over settings keeps each fit."""
    return Path(work_dir) / NORMATIVE_DIR / f"{key[:16]}.npz"


def model_card_file(work_dir: Path) -> Path:
    return Path(work_dir) / MODEL_CARD


def subjects_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "subjects"


def subject_dir(work_dir: Path, unit: str) -> Path:
    """A unit's (``sub-X`` or ``sub-X_ses-Y``) prepared folder in a work folder."""
    return subjects_dir(work_dir) / unit


def meta_file(unit_dir: Path) -> Path:
    return Path(unit_dir) / META


def volume_file(unit_dir: Path, name: str) -> Path:
    """A prepared unit's template-grid volume ``name`` (t1, flair, brain, lesion, lobe, hemisphere)."""
    return Path(unit_dir) / f"{name}.nii.gz"


def flair_to_t1_file(unit_dir: Path) -> Path:
    return Path(unit_dir) / FLAIR_TO_T1


def template_to_t1_file(unit_dir: Path) -> Path:
    return Path(unit_dir) / TEMPLATE_TO_T1


def qc_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "qc"


def registration_qc_file(work_dir: Path, unit: str) -> Path:
    return qc_dir(work_dir) / f"{unit}_registration.png"


def slices_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "slices"


def slice_index_file(slices: Path) -> Path:
    """The index of a slice cache folder (``slices_dir``, or the folder it is staged in)."""
    return Path(slices) / "index.tsv"


def slice_array_file(slices: Path, name: str) -> Path:
    return Path(slices) / f"{name}.npy"


def model_dir(work_dir: Path, name: str) -> Path:
    """The folder of the trained network called ``name`` (``models.trained.model_name``)."""
    return Path(work_dir) / "models" / name


def checkpoint_file(model_dir: Path) -> Path:
    return Path(model_dir) / CHECKPOINT


def metrics_file(model_dir: Path) -> Path:
    return Path(model_dir) / METRICS


def tune_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "tune"


def evaluate_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "evaluate" / "derivatives"


def benchmark_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "benchmark"
