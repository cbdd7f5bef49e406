"""Detection figures from what ``detect`` writes, in each subject's own FLAIR space.

Reads a unit's clusters TSV (clusters above the threshold, then candidates below it), the
``desc-clusters_dseg`` / ``desc-candidates_dseg`` label images and the anomaly probseg, and scores them
against the dataset's lesion mask (on the FLAIR grid, as the BIDS dataset holds it). A region *hits*
the lesion when one of its voxels lies in the lesion mask. Nothing here looks at template-grid maps:
these are the figures a user can find in the outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from sklearn.metrics import average_precision_score

from pseudohealthy.data.bids import unit_path
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.metrics import dice


@dataclass
class OutputScore:
    """One unit's detection, read from its derivatives."""

    unit: str
    patient: bool
    clusters: int  # above the threshold; for a control every one is a false positive
    false_clusters: int  # clusters above the threshold that miss the lesion
    hit_rank: int | None  # rank of the best cluster above the threshold that hits the lesion (None: none does)
    ranked_hit: int | None  # rank in the whole ranked list (clusters, then candidates) of the first hit
    dice: float | None  # all clusters above the threshold together vs the lesion (patients only)
    lesion_voxels: int
    # For pooled pixel AUPRC: probseg and lesion at voxels with a score or lesion, and the count of the rest
    # (score 0, no lesion), which enter as one weighted negative.
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    truth: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    zero_negatives: int = 0

    def row(self) -> dict:
        out = asdict(self)
        for key in ("scores", "truth", "zero_negatives"):
            out.pop(key)
        return out


def _one(anat: Path, pattern: str) -> Path:
    found = sorted(anat.glob(pattern))
    if len(found) != 1:
        raise UserError(f"{anat}: expected one {pattern} from `pseudohealthy detect`, found {len(found)}; "
                        "run detect for this subject first")
    return found[0]


def _ranked_rows(tsv: Path) -> list[dict]:
    lines = tsv.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


def score_unit(out_dir: Path, unit: str, lesion_mask: Path | None) -> OutputScore:
    """Score one unit's derivatives in ``out_dir`` against its lesion mask (None: a control)."""
    anat = Path(out_dir) / unit_path(unit) / "anat"
    rows = _ranked_rows(_one(anat, f"{unit}_*desc-clusters_dseg.tsv"))
    clusters = np.asarray(nib.load(_one(anat, f"{unit}_*desc-clusters_dseg.nii.gz")).dataobj)
    candidates = np.asarray(nib.load(_one(anat, f"{unit}_*desc-candidates_dseg.nii.gz")).dataobj)
    probseg = np.asarray(nib.load(_one(anat, f"{unit}_*label-FCD_desc-anomaly_probseg.nii.gz")).dataobj,
                         np.float32)
    lesion = np.zeros(probseg.shape, bool)
    if lesion_mask is not None:
        lesion = np.asarray(nib.load(lesion_mask).dataobj) > 0
        if lesion.shape != probseg.shape:
            raise UserError(f"{lesion_mask}: lesion mask is not on the grid of {unit}'s outputs")
    above = [int(r["rank"]) for r in rows if r["above_threshold"] == "true"]
    hits = {int(r["rank"]) for r in rows
            if lesion.any() and ((clusters if r["above_threshold"] == "true" else candidates)
                                 == int(r["rank"]))[lesion].any()}
    keep = (probseg > 0) | lesion
    return OutputScore(
        unit=unit, patient=bool(lesion.any()), clusters=len(above),
        false_clusters=sum(1 for rank in above if rank not in hits),
        hit_rank=min((rank for rank in above if rank in hits), default=None),
        ranked_hit=min(hits, default=None),
        dice=dice(clusters > 0, lesion) if lesion.any() else None,
        lesion_voxels=int(lesion.sum()), scores=probseg[keep], truth=lesion[keep],
        zero_negatives=int((~keep).sum()))


def pooled_auprc(scores: Iterable[OutputScore]) -> float:
    """Pixel AUPRC of the native-space probseg maps pooled over the given units (all voxels of each FLAIR)."""
    scores = [s for s in scores if s.patient]
    if not scores:
        return float("nan")
    truth = np.concatenate([s.truth for s in scores] + [np.zeros(1, bool)])
    score = np.concatenate([s.scores for s in scores] + [np.zeros(1, np.float32)])
    weight = np.concatenate([np.ones(len(s.truth)) for s in scores] + [[sum(s.zero_negatives for s in scores)]])
    return float(average_precision_score(truth, score, sample_weight=weight))


def summarise_outputs(scores: list[OutputScore]) -> dict:
    """Detection over patients (above the threshold, and in the ranked list with the candidates), false
    positives over controls, and pooled native pixel AUPRC."""
    patients = [s for s in scores if s.patient]
    controls = [s for s in scores if not s.patient]

    def share(items, test) -> float:
        return float(np.mean([bool(test(s)) for s in items])) if items else float("nan")

    return {
        "patients": len(patients), "controls": len(controls),
        "detected": share(patients, lambda s: s.hit_rank is not None),
        "top1": share(patients, lambda s: s.hit_rank == 1),
        "top3": share(patients, lambda s: s.hit_rank is not None and s.hit_rank <= 3),
        "ranked_top1": share(patients, lambda s: s.ranked_hit == 1),
        "ranked_any": share(patients, lambda s: s.ranked_hit is not None),
        "fp_clusters_per_control": float(np.mean([s.clusters for s in controls])) if controls else float("nan"),
        "false_clusters_per_patient": float(np.mean([s.false_clusters for s in patients])) if patients else float("nan"),
        "dice": float(np.mean([s.dice for s in patients])) if patients else float("nan"),
        "native_auprc": pooled_auprc(patients),
    }
