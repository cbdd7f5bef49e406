"""Detection figures from what ``detect`` writes, in each subject's own (native) FLAIR space.

Reads a unit's clusters TSV (clusters above the threshold, then candidates below it, with their peaks),
the ``desc-clusters_dseg`` label image (for Dice) and the anomaly probseg, and scores them
against the dataset's lesion mask (on the FLAIR grid, as the BIDS dataset holds it). A region *hits*
the lesion when its peak (the TSV's ``peak_x/y/z``, where a reader would look first) lies within
``HIT_DISTANCE_MM`` of the lesion mask: touching the lesion is not enough, or one cluster spread over
half the brain would "find" every lesion (the first benchmark run scored exactly that). Nothing here
looks at template-grid maps: these are the figures a user can find in the outputs.

Pixel AUPRC pools every voxel of the patients' FLAIRs; each unit keeps its probseg values as a histogram
of lesion and non-lesion voxels over ``BINS`` equal bins of [0, 1] (the probseg's range), so pooling and
bootstrapping cost nothing and the result equals sklearn's average precision up to ties within a bin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.data.bids import unit_path
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_with_atomic
from pseudohealthy.metrics import dice, lesion_contrast

BINS = 1 << 16
HIT_DISTANCE_MM = 10.0  # the paper's R@10 tolerance (10 pixels of about 1 mm)
# Conspicuity strata (EVALUATION.md: the subtle FCDs matter most): lesion volume and FLAIR contrast ratio.
SIZE_STRATA = (("< 1 cm³", 0.0, 1000.0), ("1–3 cm³", 1000.0, 3000.0), ("> 3 cm³", 3000.0, float("inf")))
CONTRAST_STRATA = (("faint (< 1.10)", 0.0, 1.10), ("subtle (1.10–1.20)", 1.10, 1.20),
                   ("conspicuous (≥ 1.20)", 1.20, float("inf")))


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
    lesion_mm3: float = 0.0
    lesion_contrast: float | None = None  # FLAIR mean in the lesion / in a shell around it (needs the FLAIR)
    # probseg histograms over BINS bins of [0, 1]: lesion voxels, other voxels (every voxel of the FLAIR grid)
    positives: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(BINS, np.int64))
    negatives: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(BINS, np.int64))

    def row(self) -> dict:
        out = asdict(self)
        out.pop("positives")
        out.pop("negatives")
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


def _histogram(values: np.ndarray) -> np.ndarray:
    bins = np.clip((np.asarray(values, np.float64) * BINS).astype(np.int64), 0, BINS - 1)
    return np.bincount(bins, minlength=BINS)


def peaks_near_lesion(peaks_mm: Sequence[Sequence[float]], lesion: np.ndarray, affine: np.ndarray) -> list[bool]:
    """For each region peak (world mm), whether it finds the lesion: lies within ``HIT_DISTANCE_MM`` of the
    ``lesion`` mask (on the grid of ``affine``). All False without a lesion."""
    if not lesion.any() or not len(peaks_mm):
        return [False] * len(peaks_mm)
    distance = ndi.distance_transform_edt(~lesion, sampling=np.linalg.norm(affine[:3, :3], axis=0))
    to_voxel = np.linalg.inv(affine)
    hits = []
    for peak in peaks_mm:
        ijk = np.round((to_voxel @ np.array([*peak, 1.0]))[:3]).astype(int)
        hits.append(bool(distance[tuple(np.clip(ijk, 0, np.array(lesion.shape) - 1))] <= HIT_DISTANCE_MM))
    return hits


def score_unit(out_dir: Path, unit: str, lesion_mask: Path | None, flair: Path | None = None) -> OutputScore:
    """Score one unit's derivatives in ``out_dir`` against its lesion mask (None: a control); with the
    unit's ``flair``, also the lesion's FLAIR contrast (for the conspicuity strata)."""
    anat = Path(out_dir) / unit_path(unit) / "anat"
    rows = _ranked_rows(_one(anat, f"{unit}_*desc-clusters_dseg.tsv"))
    clusters = np.asarray(nib.load(_one(anat, f"{unit}_*desc-clusters_dseg.nii.gz")).dataobj)
    probseg_img = nib.load(_one(anat, f"{unit}_*label-FCD_desc-anomaly_probseg.nii.gz"))
    probseg = np.asarray(probseg_img.dataobj, np.float32)
    lesion = np.zeros(probseg.shape, bool)
    if lesion_mask is not None:
        lesion = np.asarray(nib.load(lesion_mask).dataobj) > 0
        if lesion.shape != probseg.shape:
            raise UserError(f"{lesion_mask}: lesion mask is not on the grid of {unit}'s outputs")
    above = [int(r["rank"]) for r in rows if r["above_threshold"] == "true"]
    peaks = [(float(r["peak_x"]), float(r["peak_y"]), float(r["peak_z"])) for r in rows]
    hits = {int(r["rank"]) for r, hit in zip(rows, peaks_near_lesion(peaks, lesion, probseg_img.affine)) if hit}
    contrast = (lesion_contrast(lesion, np.asarray(nib.load(flair).dataobj, np.float32))
                if flair is not None and lesion.any() else None)
    return OutputScore(
        unit=unit, patient=bool(lesion.any()), clusters=len(above),
        false_clusters=sum(1 for rank in above if rank not in hits),
        hit_rank=min((rank for rank in above if rank in hits), default=None),
        ranked_hit=min(hits, default=None),
        dice=dice(clusters > 0, lesion) if lesion.any() else None,
        lesion_voxels=int(lesion.sum()),
        lesion_mm3=float(lesion.sum() * abs(np.linalg.det(probseg_img.affine[:3, :3]))),
        lesion_contrast=contrast, positives=_histogram(probseg[lesion]), negatives=_histogram(probseg[~lesion]))


def _precision_recall(scores: Iterable[OutputScore]) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every bin edge from the top down, over the patients among ``scores``."""
    patients = [s for s in scores if s.patient]
    positives = sum(s.positives for s in patients)[::-1].cumsum()
    negatives = sum(s.negatives for s in patients)[::-1].cumsum()
    keep = np.flatnonzero(np.diff(np.concatenate([[0], positives])) > 0)  # thresholds that add lesion voxels
    precision = positives[keep] / (positives[keep] + negatives[keep])
    return precision, positives[keep] / positives[-1]


def pooled_auprc(scores: Iterable[OutputScore]) -> float:
    """Pixel AUPRC (average precision) of the native-space probseg maps pooled over the given units' patients
    (all voxels of each FLAIR)."""
    scores = [s for s in scores if s.patient]
    if not scores:
        return float("nan")
    precision, recall = _precision_recall(scores)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def pr_curve(scores: Iterable[OutputScore], points: int = 400) -> dict[str, list[float]]:
    """The pooled native precision-recall curve, thinned to about ``points`` points evenly spaced in recall."""
    scores = [s for s in scores if s.patient]
    if not scores:
        return {"precision": [], "recall": []}
    precision, recall = _precision_recall(scores)
    keep = np.unique(np.searchsorted(recall, np.linspace(0, 1, points)).clip(0, len(recall) - 1))
    return {"precision": precision[keep].round(5).tolist(), "recall": recall[keep].round(5).tolist()}


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
        "ranked_top3": share(patients, lambda s: s.ranked_hit is not None and s.ranked_hit <= 3),
        "ranked_any": share(patients, lambda s: s.ranked_hit is not None),
        "fp_clusters_per_control": float(np.mean([s.clusters for s in controls])) if controls else float("nan"),
        "false_clusters_per_patient": (float(np.mean([s.false_clusters for s in patients])) if patients
                                       else float("nan")),
        "dice": float(np.mean([s.dice for s in patients])) if patients else float("nan"),
        "native_auprc": pooled_auprc(patients),
    }


def stratified(scores: list[OutputScore]) -> dict[str, dict[str, dict]]:
    """``summarise_outputs`` of the patients within each size and each contrast stratum (empty ones left out);
    ``patients`` counts distinct units, ``runs`` the scores pooled (units x seeds)."""
    out: dict[str, dict[str, dict]] = {"size": {}, "contrast": {}}
    for kind, strata, value in (("size", SIZE_STRATA, lambda s: s.lesion_mm3),
                                ("contrast", CONTRAST_STRATA, lambda s: s.lesion_contrast)):
        for name, low, high in strata:
            members = [s for s in scores if s.patient and value(s) is not None and low <= value(s) < high]
            if members:  # figures pool the runs given (e.g. every seed's); n counts each patient once
                out[kind][name] = {**{k: v for k, v in summarise_outputs(members).items()
                                      if k not in ("controls", "fp_clusters_per_control")},
                                   "patients": len({s.unit for s in members}), "runs": len(members)}
    return out


def save_histograms(path: Path, scores: list[OutputScore]) -> None:
    """The units' score histograms (what pooled AUPRC and PR curves need) as one .npz; their other fields are
    stored as rows (``OutputScore.row``) beside it."""
    arrays = {f"{kind}_{i}": getattr(s, kind) for i, s in enumerate(scores) for kind in ("positives", "negatives")}
    write_with_atomic(Path(path), lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")


def load_scores(rows: list[dict], path: Path) -> list[OutputScore]:
    """The scores stored by ``save_histograms`` and their ``rows``, in the same order."""
    with np.load(path) as hist:
        return [OutputScore(**row, positives=hist[f"positives_{i}"], negatives=hist[f"negatives_{i}"])
                for i, row in enumerate(rows)]

