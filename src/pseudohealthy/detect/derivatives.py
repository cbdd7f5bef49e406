"""One unit's derivatives: its maps carried to the space of its FLAIR, clusters and candidates, the files.

Derivatives (native FLAIR space of each subject), for a FLAIR ``sub-X_acq-A_FLAIR.nii.gz``:
- ``sub-X_acq-A_desc-pseudohealthy_FLAIR.nii.gz``: the pseudo-healthy FLAIR (FLAIR intensity scale);
- ``sub-X_acq-A_label-FCD_desc-anomaly_probseg.nii.gz``: anomaly score scaled to [0, 1] (not a
  calibrated probability);
- ``sub-X_acq-A_label-FCD_desc-anomalyspread_probseg.nii.gz``: voxel-wise standard deviation of the
  N single-sample maps on the same [0, 1] scale (all 0 when N = 1);
- ``sub-X_acq-A_desc-clusters_dseg.nii.gz`` + ``.tsv``: clusters above the calibrated threshold,
  label = rank; the TSV holds rank, peak and mean score, volume, centroid, peak (scanner and MNI),
  hemisphere, lobe and confidence (the fraction of the N single-sample maps that exceed the threshold
  near its peak), then the candidates below the threshold (``above_threshold`` false);
- ``sub-X_acq-A_desc-candidates_dseg.nii.gz``: those candidates, label = their rank in the TSV;
- ``sub-X_acq-A_desc-brain_mask.nii.gz``; each image with its JSON sidecar.
A subject with sessions gets ``sub-X/ses-Y/anat/sub-X_ses-Y_…``. The report (``sub-X.html`` and
``sub-X/figures/``) is ``detect.report``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy import __version__, workdir
from pseudohealthy.anomaly.clusters import (
    Cluster,
    ClusterAgreement,
    ClusterSettings,
    find_candidates,
    find_clusters,
    peak_regions,
    relative_peak,
)
from pseudohealthy.anomaly.maps import score_to_unit
from pseudohealthy.config import Config
from pseudohealthy.data.bids import SubjectInputs, unit_path
from pseudohealthy.data.labels import CLASS_NAMES
from pseudohealthy.data.preprocess import BrainMaskSource, NativeMapper, Normalisation, brain_mask_source
from pseudohealthy.detect.pipeline import SubjectMaps
from pseudohealthy.io.atomic import write_json_atomic, write_text_atomic
from pseudohealthy.io.nifti import save_nifti
from pseudohealthy.models.card import card_summary
from pseudohealthy.provenance import package_digest, source_commit


@dataclass
class NativeFindings:
    """One unit's results on the grid of its FLAIR (volumes of the FLAIR's shape)."""

    affine: np.ndarray  # the FLAIR's
    pseudo: np.ndarray  # pseudo-healthy FLAIR, FLAIR intensity scale, 0 outside the brain
    score: np.ndarray  # anomaly probseg, s / (s + threshold): 0.5 at the threshold
    spread: np.ndarray  # voxel-wise standard deviation of the single-sample probseg maps (0 when N = 1)
    brain: np.ndarray  # bool
    clusters: list[Cluster]  # above the threshold, ranked
    labels: np.ndarray  # uint16, a cluster's rank on its voxels
    candidates: list[Cluster]  # the strongest regions that are not clusters, ranked after them
    candidate_labels: np.ndarray  # uint16, a candidate's rank on its voxels
    samples: int  # N, the single-sample maps the score is the mean of


def native_findings(maps: SubjectMaps, scratch: Path, meta: dict, to_native: NativeMapper, affine: np.ndarray,
                    calibration: dict, cfg: Config) -> NativeFindings:
    """The unit's template-grid ``maps`` carried to its FLAIR grid (``affine``), its clusters above the
    calibrated threshold and candidates below it, with each region's MNI peak and confidence."""
    norm = Normalisation(**meta["normalisation"]["flair"])
    pseudo_native = np.asarray(to_native(norm.invert(maps.pseudo_healthy) * maps.brain).dataobj)
    settings = ClusterSettings.of(calibration)
    score_native = score_to_unit(np.asarray(to_native(maps.anomaly).dataobj), settings.threshold)
    lobe = np.asarray(to_native(_vol(scratch, "lobe"), linear=False).dataobj)
    hemi = np.asarray(to_native(_vol(scratch, "hemisphere"), linear=False).dataobj)
    brain_native = np.asarray(to_native(maps.brain.astype(np.float32)).dataobj) > 0.5
    clusters, labels = find_clusters(score_native, affine, 0.5, settings.min_cluster_mm3, lobe, hemi,
                                     settings.rank_by)
    floor = cfg.report.candidate_floor
    candidates, candidate_labels = find_candidates(
        score_native, affine, floor / (1 + floor), settings.min_cluster_mm3, labels, cfg.report.candidates,
        lobe, hemi, settings.rank_by)  # s > floor * threshold is probseg > floor / (1 + floor)
    for cluster in clusters + candidates:
        cluster.peak_mni = to_native.template_mm(cluster.peak_mm)
    spread_native = _agreement(maps, clusters + candidates, labels + candidate_labels, affine, to_native,
                               settings.threshold, cfg)
    return NativeFindings(affine, pseudo_native, score_native, spread_native, brain_native, clusters, labels,
                          candidates, candidate_labels, len(maps.sample_maps))


def write_derivatives(out_dir: Path, inputs: SubjectInputs, found: NativeFindings, meta: dict, calibration: dict,
                      cfg: Config, classifier: str) -> None:
    """The unit's six NIfTI images, its clusters TSV and a JSON sidecar per image (the module's list)."""
    pid = inputs.unit
    anat = out_dir / unit_path(pid) / "anat"
    stem = derivative_stem(inputs.flair) if inputs.flair.name.startswith(pid + "_") else pid
    affine = found.affine
    save_nifti(anat / f"{stem}_desc-pseudohealthy_FLAIR.nii.gz", found.pseudo.astype(np.float32), affine)
    save_nifti(anat / f"{stem}_label-FCD_desc-anomaly_probseg.nii.gz", found.score.astype(np.float32), affine)
    save_nifti(anat / f"{stem}_label-FCD_desc-anomalyspread_probseg.nii.gz", found.spread, affine)
    save_nifti(anat / f"{stem}_desc-clusters_dseg.nii.gz", found.labels.astype(np.uint16), affine)
    save_nifti(anat / f"{stem}_desc-candidates_dseg.nii.gz", found.candidate_labels.astype(np.uint16), affine)
    save_nifti(anat / f"{stem}_desc-brain_mask.nii.gz", found.brain.astype(np.uint8), affine)
    _write_cluster_table(anat / f"{stem}_desc-clusters_dseg.tsv", found.clusters + found.candidates)
    sources = [_source(inputs.flair), _source(inputs.t1w)]
    n_samples = found.samples
    floor = cfg.report.candidate_floor
    space = {"SpatialReference": sources[0]}  # the subject's own FLAIR grid
    for name, extra in ((f"{stem}_desc-pseudohealthy_FLAIR.json",
                         {"Description": "pseudo-healthy FLAIR (diffusion synthesis), FLAIR intensity scale, "
                                         "inside the brain mask only (zero outside)",
                          "SkullStripped": brain_extracted(brain_mask_source(meta)),
                          "BrainMaskSource": meta["brain_mask"]}),
                        (f"{stem}_label-FCD_desc-anomaly_probseg.json",
                         {"Description": "anomaly score s (FLAIR minus pseudo-healthy FLAIR, post-processed) as "
                                         "s / (s + threshold): 0.5 at the validation-chosen threshold; not a "
                                         "calibrated probability; the mean of N single-sample maps",
                          "AnomalyThreshold": calibration["threshold"], "Samples": n_samples}),
                        (f"{stem}_label-FCD_desc-anomalyspread_probseg.json",
                         {"Description": "voxel-wise standard deviation (ddof 0) of the N single-sample anomaly "
                                         "maps, each as s / (s + threshold) like the anomaly probseg: how much "
                                         "the map moves between independent pseudo-healthy draws (0 when N = 1)",
                          "Samples": n_samples}),
                        (f"{stem}_desc-brain_mask.json", {"Description": f"brain mask: {meta['brain_mask']}",
                                                          "Type": "Brain"}),
                        (f"{stem}_desc-clusters_dseg.json",
                         {"Description": "clusters above the validation-chosen threshold; label = rank",
                          "Threshold": 0.5, "ClassifierLobePrediction": classifier,
                          "MinClusterVolume_mm3": calibration["min_cluster_mm3"], "Samples": n_samples,
                          **CLUSTER_COLUMNS}),
                        (f"{stem}_desc-candidates_dseg.json",
                         {"Description": "candidates: the strongest regions that are not clusters (anomaly score "
                                         f"above {floor:g} x the threshold, not touching a cluster; under the "
                                         "threshold, or above it over less than the minimum cluster volume); "
                                         "label = rank in the clusters TSV (rows with above_threshold false)",
                          "CandidateFloor": floor, "MaxCandidates": cfg.report.candidates})):
        write_json_atomic(anat / name, {"Sources": sources, **space, **extra})


def derivative_stem(flair: Path) -> str:
    name = flair.name.removesuffix(".gz").removesuffix(".nii")
    return re.sub(r"_FLAIR$", "", name)


def write_description(out_dir: Path, source_uri: str, card: dict | None = None) -> None:
    """The derivatives' description with provenance: package version, code commit and digest, and the model."""
    model = f" Model: {card_summary(card)}." if card else ""
    write_json_atomic(out_dir / "dataset_description.json", {
        "Name": "pseudohealthy FCD detection",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "pseudohealthy", "Version": __version__,
                         "Description": "location-guided pseudo-healthy diffusion (Li et al. 2026); code commit "
                                        f"{source_commit()}, package sources sha256 {package_digest()[:16]}.{model}"}],
        "SourceDatasets": [{"URL": source_uri}],
    })
    write_text_atomic(out_dir / ".bidsignore", "*.html\n**/figures\nsourcedata\n")
    write_text_atomic(out_dir / "README", (
        "FCD candidates found by pseudohealthy (location-guided pseudo-healthy diffusion synthesis).\n"
        "Per subject, in the space of its FLAIR: desc-pseudohealthy_FLAIR (the FLAIR as if healthy),\n"
        "label-FCD_desc-anomaly_probseg (anomaly score in [0, 1], not a calibrated probability),\n"
        "desc-clusters_dseg (+ .tsv: ranked clusters, then candidates below the threshold),\n"
        "desc-candidates_dseg, desc-brain_mask; sub-X.html is the report.\n"
        "Research software: not a medical device.\n"))


def brain_extracted(source: BrainMaskSource) -> bool:
    """Whether a brain mask comes from a brain extraction of this subject (learned, provided, or the input's
    own skull stripping) rather than from the MNI152 template's mask after an affine registration, which only
    approximates the brain's edge (BIDS ``SkullStripped``)."""
    return source != "template"


def classifier_summary(maps: SubjectMaps) -> str:
    """The classifier's verdict on the unit's most abnormal slice, for the clusters sidecar and the report."""
    probs = maps.synthesis.class_probabilities[maps.synthesis.slices]
    if probs.size == 0 or not probs.any():
        return "n/a (no classifier)"
    abnormal = 1 - probs[:, 0]
    z = int(np.argmax(abnormal))
    if probs.shape[1] == 2:
        return f"lesion probability {abnormal[z]:.2f} (binary classifier)"
    cls = int(np.argmax(probs[z, 1:])) + 1
    return f"{CLASS_NAMES[cls]} (p = {probs[z, cls]:.2f}; most abnormal slice p(lesion) = {abnormal[z]:.2f})"


def _source(path: Path) -> str:
    """A BIDS URI for a file of the source dataset (``sub-X[/ses-Y]/anat/…``), else the file's own URI."""
    parents = Path(path).parents
    if path.parent.name == "anat" and len(parents) > 3:
        if parents[1].name.startswith("sub-"):
            return f"bids::{path.relative_to(parents[2]).as_posix()}"
        if parents[1].name.startswith("ses-") and parents[2].name.startswith("sub-"):
            return f"bids::{path.relative_to(parents[3]).as_posix()}"
    return Path(path).resolve().as_uri()


def _vol(subject_dir: Path, name: str) -> np.ndarray:
    return np.asanyarray(nib.load(workdir.volume_file(subject_dir, name)).dataobj).astype(np.float32)


# Column descriptions of the clusters TSV (BIDS: in the sidecar JSON shared with the dseg image).
CLUSTER_COLUMNS = {
    "index": {"Description": "label value in the dseg image (= rank): desc-clusters_dseg for clusters, "
                             "desc-candidates_dseg for candidates"},
    "name": {"Description": "cluster-<rank> above the threshold, candidate-<rank> below it"},
    "rank": {"Description": "1 = most suspicious, by peak (or mean) score"},
    "peak_score": {"Description": "largest anomaly probseg value in the cluster (0.5 = threshold)"},
    "mean_score": {"Description": "mean anomaly probseg value in the cluster"},
    "volume_mm3": {"Description": "cluster volume", "Units": "mm^3"},
    "centroid_x": {"Description": "centroid, scanner coordinates of the FLAIR (RAS)", "Units": "mm"},
    "centroid_y": {"Description": "centroid, scanner coordinates of the FLAIR (RAS)", "Units": "mm"},
    "centroid_z": {"Description": "centroid, scanner coordinates of the FLAIR (RAS)", "Units": "mm"},
    "peak_x": {"Description": "peak voxel, scanner coordinates of the FLAIR (RAS)", "Units": "mm"},
    "peak_y": {"Description": "peak voxel, scanner coordinates of the FLAIR (RAS)", "Units": "mm"},
    "peak_z": {"Description": "peak voxel, scanner coordinates of the FLAIR (RAS)", "Units": "mm"},
    "peak_mni_x": {"Description": "peak in MNI152 coordinates (through the subject's registration)", "Units": "mm"},
    "peak_mni_y": {"Description": "peak in MNI152 coordinates (through the subject's registration)", "Units": "mm"},
    "peak_mni_z": {"Description": "peak in MNI152 coordinates (through the subject's registration)", "Units": "mm"},
    "hemisphere": {"Description": "L or R, from the MNI152 atlas carried to the subject"},
    "lobe": {"Description": "lobe of most of the cluster's voxels (atlas)"},
    "above_threshold": {"Description": "true: a cluster, above the validation-chosen threshold over at least the "
                                       "minimum cluster volume (label in desc-clusters_dseg); false: a candidate, "
                                       "under the threshold or above it over a smaller volume (label in "
                                       "desc-candidates_dseg), listed so a reader sees where the map peaks"},
    "relative_peak": {"Description": "the peak's anomaly score divided by the threshold (above 1 for clusters; "
                                     "0.97 = 3 % under the threshold)"},
    "confidence": {"Description": "fraction of the N single-sample anomaly maps (independent pseudo-healthy "
                                  "draws) whose maximum within the cluster's peak region (its voxels within "
                                  "method.confidence_radius_mm of the peak) exceeds the threshold; n/a when "
                                  "N = 1 (no draws to compare)"},
}


def _agreement(maps: SubjectMaps, clusters: list[Cluster], labels: np.ndarray, affine: np.ndarray,
               to_native: NativeMapper, threshold: float, cfg: Config) -> np.ndarray:
    """Set each cluster's confidence from the single-sample maps; return their native-space spread."""
    if len(maps.sample_maps) < 2:
        return np.zeros(labels.shape, np.float32)
    agreement = ClusterAgreement(peak_regions(labels, clusters, affine, cfg.method.confidence_radius_mm), 0.5)
    for sample_map in maps.sample_maps:
        agreement.add(score_to_unit(np.asarray(to_native(sample_map).dataobj), threshold))
    for cluster, confidence in zip(clusters, agreement.confidence()):
        cluster.confidence = confidence
    return agreement.spread(labels.shape)


def _write_cluster_table(path: Path, clusters: list[Cluster]) -> None:
    """One row per cluster then per candidate, columns as ``CLUSTER_COLUMNS`` (n/a where not known)."""
    def row(c: Cluster) -> list:
        name = f"cluster-{c.rank}" if c.above_threshold else f"candidate-{c.rank}"
        return [c.rank, name, c.rank, f"{c.peak_score:.4f}", f"{c.mean_score:.4f}",
                f"{c.volume_mm3:.1f}", *c.centroid_mm, *c.peak_mm, *(c.peak_mni or ["n/a"] * 3), c.hemisphere,
                c.lobe, str(c.above_threshold).lower(), f"{relative_peak(c):.3f}",
                "n/a" if c.confidence is None else f"{c.confidence:.3f}"]

    lines = ["\t".join(CLUSTER_COLUMNS)] + ["\t".join(str(v) for v in row(c)) for c in clusters]
    write_text_atomic(path, "\n".join(lines) + "\n")
