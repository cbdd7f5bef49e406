"""``detect``: from trained, calibrated models to BIDS-derivatives maps, cluster tables and reports.

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
- ``sub-X.html`` and ``sub-X/figures/``: the report; ``index.html`` lists all subjects.
A subject with sessions gets ``sub-X/ses-Y/anat/sub-X_ses-Y_…`` and ``sub-X_ses-Y.html`` per session.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from pseudohealthy import __version__, workdir
from pseudohealthy.anomaly.clusters import (
    Cluster,
    ClusterAgreement,
    find_candidates,
    find_clusters,
    peak_regions,
    relative_peak,
)
from pseudohealthy.anomaly.maps import score_to_unit
from pseudohealthy.config import Config, load_work_config
from pseudohealthy.data.bids import SubjectInputs, SubjectSkipped, build_inventory, unit_path
from pseudohealthy.data.labels import CLASS_NAMES
from pseudohealthy.data.preprocess import (
    BrainMaskSource,
    NativeMapper,
    Normalisation,
    brain_mask_source,
    is_done,
    load_meta,
    preprocess_subject,
)
from pseudohealthy.data.qc import native_qc
from pseudohealthy.detect.calibration import calibrated_samples, with_samples
from pseudohealthy.detect.pipeline import SubjectMaps, analyse, load_models
from pseudohealthy.detect.report import cluster_figure, index_page, overlay_figure, subject_page
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_json_atomic, write_text_atomic
from pseudohealthy.io.nifti import save_nifti
from pseudohealthy.models.card import card_summary, model_card
from pseudohealthy.models.trained import load_calibration, model_dir, required_models
from pseudohealthy.provenance import package_digest, source_commit


def _derivative_stem(flair: Path) -> str:
    name = flair.name.removesuffix(".gz").removesuffix(".nii")
    return re.sub(r"_FLAIR$", "", name)


def _check_out_dir(source_dir: Path, out_dir: Path, what: str = "BIDS_DIR") -> None:
    """Outputs never go inside the input folder; OUT_DIR must be writable."""
    source, out = Path(source_dir).resolve(), Path(out_dir).resolve()
    if out == source or source in out.parents:
        raise UserError(f"OUT_DIR {out_dir} is inside {what} {source_dir}; choose a folder outside the input "
                        "data (e.g. BIDS_DIR/../derivatives/pseudohealthy)")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UserError(f"{out_dir}: not writable; choose a folder you can write to")


def _write_description(out_dir: Path, source_uri: str, card: dict | None = None) -> None:
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


def _classifier_summary(maps: SubjectMaps, cfg: Config) -> str:
    probs = maps.synthesis.class_probabilities[maps.synthesis.slices]
    if probs.size == 0 or not probs.any():
        return "n/a (no classifier)"
    abnormal = 1 - probs[:, 0]
    z = int(np.argmax(abnormal))
    if probs.shape[1] == 2:
        return f"lesion probability {abnormal[z]:.2f} (binary classifier)"
    cls = int(np.argmax(probs[z, 1:])) + 1
    return f"{CLASS_NAMES[cls]} (p = {probs[z, cls]:.2f}; most abnormal slice p(lesion) = {abnormal[z]:.2f})"


def detect_subject(inputs: SubjectInputs, out_dir: Path, cfg: Config, models, calibration: dict,
                   device: str = "cpu", run_key_value: str | None = None, card: dict | None = None,
                   work_root: Path | None = None, figures: bool = True) -> dict:
    """Preprocess, synthesise, map back to native space, cluster, and write the subject's derivatives.

    Preprocessing goes to ``work_root/<subject>`` (default OUT_DIR/sourcedata/work); the marker that says
    the subject is finished always lives in OUT_DIR/sourcedata/work/<subject>. ``figures=False`` writes
    the images and tables only, no PNGs or HTML report (the benchmark scores hundreds of runs).
    """
    pid = inputs.unit  # sub-X, or sub-X_ses-Y: one session of a subject with sessions
    state = _scratch(out_dir, pid)
    state.mkdir(parents=True, exist_ok=True)
    scratch = Path(work_root) / pid if work_root else state
    if not is_done(scratch, cfg.data):
        preprocess_subject(inputs, cfg.data, scratch)
    maps = analyse(scratch, models, cfg, device)
    meta = load_meta(scratch)
    anat = out_dir / unit_path(pid) / "anat"
    stem = _derivative_stem(inputs.flair) if inputs.flair.name.startswith(pid + "_") else pid
    flair_native = nib.load(inputs.flair)
    affine = flair_native.affine

    norm = Normalisation(**meta["normalisation"]["flair"])
    to_native = NativeMapper(scratch)
    pseudo_native = np.asarray(to_native(norm.invert(maps.pseudo_healthy) * maps.brain).dataobj)
    score_native = score_to_unit(np.asarray(to_native(maps.anomaly).dataobj), calibration["threshold"])
    lobe = np.asarray(to_native(_vol(scratch, "lobe"), linear=False).dataobj)
    hemi = np.asarray(to_native(_vol(scratch, "hemisphere"), linear=False).dataobj)
    brain_native = np.asarray(to_native(maps.brain.astype(np.float32)).dataobj) > 0.5
    clusters, labels = find_clusters(score_native, affine, 0.5,
                                     calibration["min_cluster_mm3"], lobe, hemi, calibration["rank_by"])
    floor = cfg.report.candidate_floor
    candidates, candidate_labels = find_candidates(
        score_native, affine, floor / (1 + floor), calibration["min_cluster_mm3"], labels, cfg.report.candidates,
        lobe, hemi, calibration["rank_by"])  # s > floor * threshold is probseg > floor / (1 + floor)
    for cluster in clusters + candidates:
        cluster.peak_mni = to_native.template_mm(cluster.peak_mm)
    spread_native = _agreement(maps, clusters + candidates, labels + candidate_labels, affine, to_native,
                               calibration["threshold"], cfg)

    save_nifti(anat / f"{stem}_desc-pseudohealthy_FLAIR.nii.gz", pseudo_native.astype(np.float32), affine)
    save_nifti(anat / f"{stem}_label-FCD_desc-anomaly_probseg.nii.gz", score_native.astype(np.float32), affine)
    save_nifti(anat / f"{stem}_label-FCD_desc-anomalyspread_probseg.nii.gz", spread_native, affine)
    save_nifti(anat / f"{stem}_desc-clusters_dseg.nii.gz", labels.astype(np.uint16), affine)
    save_nifti(anat / f"{stem}_desc-candidates_dseg.nii.gz", candidate_labels.astype(np.uint16), affine)
    save_nifti(anat / f"{stem}_desc-brain_mask.nii.gz", brain_native.astype(np.uint8), affine)
    _write_cluster_table(anat / f"{stem}_desc-clusters_dseg.tsv", clusters + candidates)
    sources = [_source(inputs.flair), _source(inputs.t1w)]
    classifier = _classifier_summary(maps, cfg)
    n_samples = len(maps.sample_maps)
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

    (state / DONE_MARKER).unlink(missing_ok=True)
    if figures:
        figure_dir = out_dir / unit_path(pid) / "figures"
        truth = nib.load(inputs.lesion_mask) if inputs.lesion_mask else None
        images = {"pseudo": nib.Nifti1Image(pseudo_native, affine), "score": nib.Nifti1Image(score_native, affine),
                  "labels": nib.Nifti1Image(labels, affine), "t1w": to_native.t1_on_flair_grid(scratch, inputs.t1w)}
        overlay_figure(flair_native, images["pseudo"], images["score"], images["labels"], clusters, truth,
                       figure_dir / f"{pid}_overlays.png", dpi=cfg.report.dpi)
        images["labels"] = nib.Nifti1Image(labels + candidate_labels, affine)  # outlines in the three-view figures
        cluster_figures = _cluster_figures(pid, flair_native, images, truth, clusters, candidates, score_native,
                                           affine, figure_dir, cfg)
        native_qc(flair_native, images["t1w"], brain_native, figure_dir / f"{pid}_qc.png",
                  f"{pid}: brain mask ({meta['brain_mask']}) and T1w -> FLAIR registration", cfg.report.dpi)
        info = {"FLAIR": inputs.flair.name, "T1w": inputs.t1w.name, "brain mask": meta["brain_mask"],
                "classifier's lobe prediction": classifier,
                "threshold (validation-chosen)": f"anomaly {calibration['threshold']:.3f} (0.5 on the probseg map)",
                "clusters above threshold": len(clusters),
                "candidates below threshold": len(candidates),
                "pseudo-healthy draws per slice (confidence needs 2 or more)": n_samples}
        if inputs.notes:
            info["input notes"] = "; ".join(inputs.notes)
        if card:
            info["model"] = card_summary(card)
        synthetic = card and card["training_data"]["source"]["synthetic"]
        warning = ("This model was trained on synthetic phantom data only: its output on a real scan means "
                   "nothing until it is retrained on real data." if synthetic else None)
        figures_rel = f"{unit_path(pid).as_posix()}/figures"
        subject_page(out_dir / f"{pid}.html", pid, f"{figures_rel}/{pid}_overlays.png", clusters + candidates, info,
                     cluster_figures, warning, qc_rel=f"{figures_rel}/{pid}_qc.png")
    if run_key_value:
        write_json_atomic(state / DONE_MARKER, {"run_key": run_key_value})
    top = (f"{clusters[0].hemisphere} {clusters[0].lobe}, {clusters[0].volume_mm3:.0f} mm³" if clusters else "none")
    return {"participant_id": pid, "n_clusters": len(clusters), "top": top, "classifier": classifier,
            "clusters": [c.row() for c in clusters], "candidates": [c.row() for c in candidates], "maps": maps,
            "lesion_mask": str(inputs.lesion_mask) if inputs.lesion_mask else None}


def _region_caption(c: Cluster) -> str:
    confidence = "" if c.confidence is None else f", confidence {c.confidence:.0%}"
    if c.above_threshold:
        return (f"cluster {c.rank}: {c.hemisphere} {c.lobe}, {c.volume_mm3:.0f} mm³, peak score {c.peak_score:.2f}"
                f"{confidence}")
    return (f"candidate {c.rank} (below threshold): {c.hemisphere} {c.lobe}, {c.volume_mm3:.0f} mm³, peak "
            f"{relative_peak(c):.0%} of the threshold{confidence}")


def _cluster_figures(pid: str, flair: nib.Nifti1Image, images: dict, truth, clusters: list[Cluster],
                     candidates: list[Cluster], score: np.ndarray, affine: np.ndarray, figures: Path,
                     cfg: Config) -> list[tuple[str, str]]:
    """One three-view PNG per shown cluster (the top ``report.clusters``) and per candidate below the
    threshold; with neither, one through the map's global maximum so a reader still sees where it peaks."""
    out = []
    targets = [(c.rank, c.peak_mm, _region_caption(c)) for c in clusters[:cfg.report.clusters] + candidates]
    if not targets:
        peak = np.unravel_index(int(np.argmax(score)), score.shape)
        peak_mm = [float(v) for v in affine[:3, :3] @ np.asarray(peak) + affine[:3, 3]]
        targets = [(None, peak_mm, f"no cluster above the threshold: the map's maximum ({score.max():.2f}, "
                                   "threshold 0.5)")]
    for rank, peak_mm, caption in targets:
        name = f"{pid}_cluster-{rank}.png" if rank else f"{pid}_maximum.png"
        cluster_figure(flair, images["t1w"], images["pseudo"], images["score"], images["labels"], truth, peak_mm,
                       rank, caption, figures / name, cfg.report.dpi,
                       display_floor=cfg.report.candidate_floor / (1 + cfg.report.candidate_floor))
        out.append((f"{unit_path(pid).as_posix()}/figures/{name}", caption))
    return out


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


def existing_outputs(out_dir: Path, unit: str) -> list[Path]:
    """A unit's derivatives and report page already in OUT_DIR."""
    return sorted((Path(out_dir) / unit_path(unit)).glob("anat/*")) + [
        p for p in [Path(out_dir) / f"{unit}.html"] if p.exists()]


DONE_MARKER = "detect_done.json"


def run_key(work_dir: Path, cfg: Config) -> str:
    """Fingerprint of what determines a subject's outputs: config, calibration and the weights it uses."""
    digest = hashlib.sha256()
    for path in [workdir.config_file(work_dir), workdir.calibration_file(work_dir),
                 *[workdir.checkpoint_file(model_dir(work_dir, kind, cfg)) for kind in required_models(cfg)]]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _scratch(out_dir: Path, participant_id: str) -> Path:
    return Path(out_dir) / "sourcedata" / "work" / participant_id


def _output_state(out_dir: Path, participant_id: str, key: str) -> str:
    """'new' (no outputs), 'done' (finished by this same model), 'interrupted' (ours, unfinished) or 'foreign'."""
    if not existing_outputs(out_dir, participant_id):
        return "new"
    marker = _scratch(out_dir, participant_id) / DONE_MARKER
    if marker.is_file():
        return "done" if json.loads(marker.read_text()).get("run_key") == key else "foreign"
    # Derivatives of ours without the marker (written last): a run was stopped inside this subject.
    return "interrupted" if _scratch(out_dir, participant_id).is_dir() else "foreign"


def detect(bids_dir: Path, out_dir: Path, work_dir: Path, participant_labels: Iterable[str] | None = None,
           overwrite: bool = False, device: str = "cpu", allow_2d_flair: bool = False,
           on_start: Callable[[int], None] | None = None,
           on_subject: Callable[[str, str | None], None] | None = None, samples: int | None = None,
           nprocs: int = 1, work_root: Path | None = None) -> list[dict]:
    """Detect lesions for every selected subject of ``bids_dir``; derivatives go to ``out_dir``.

    Re-running the same command continues an interrupted run: subjects finished with the same model
    are skipped, a subject stopped half-way is redone. Other existing outputs need ``overwrite``.
    """
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    _check_out_dir(bids_dir, out_dir)
    inventory = build_inventory(bids_dir, participant_labels, allow_2d_flair, require_labels=False)
    for pid, reason in inventory.skipped.items():
        if on_subject:
            on_subject(pid, reason)
    return _detect_all(inventory.subjects, out_dir, work_dir, bids_dir.resolve().as_uri(), overwrite, device,
                       on_start, on_subject, samples, nprocs, work_root)


def detect_pair(t1w: Path, flair: Path, out_dir: Path, work_dir: Path, participant_id: str = "sub-01",
                overwrite: bool = False, device: str = "cpu", samples: int | None = None,
                work_root: Path | None = None) -> dict:
    """Detect lesions on a plain T1w + FLAIR pair (any file names, no BIDS dataset); the outputs are
    the same BIDS-derivatives files as ``detect`` writes, named after ``participant_id``."""
    t1w, flair, out_dir = Path(t1w), Path(flair), Path(out_dir)
    for path, what in ((t1w, "T1w"), (flair, "FLAIR")):
        if not path.is_file():
            raise UserError(f"{path}: {what} file not found")
    if not re.fullmatch(r"sub-[A-Za-z0-9]+", participant_id):
        raise UserError(f"--subject {participant_id!r} is not a valid BIDS subject id (sub-<letters/digits>)")
    for path in (t1w, flair):
        _check_out_dir(path.parent, out_dir, "the input folder")
    inputs = SubjectInputs(participant_id, "unknown", t1w, flair, None, 0, None, None)
    results = _detect_all([inputs], out_dir, work_dir, flair.resolve().parent.as_uri(), overwrite, device,
                          samples=samples, work_root=work_root)
    if not results:
        raise UserError(f"{out_dir}: {participant_id} was already done with this model; pass --overwrite to redo it")
    return results[0]


def _detect_all(subjects: list[SubjectInputs], out_dir: Path, work_dir: Path, source_uri: str, overwrite: bool,
                device: str, on_start: Callable[[int], None] | None = None,
                on_subject: Callable[[str, str | None], None] | None = None,
                samples: int | None = None, nprocs: int = 1, work_root: Path | None = None) -> list[dict]:
    calibration = load_calibration(work_dir)
    cfg = with_samples(load_work_config(work_dir), calibrated_samples(work_dir, calibration, samples))
    card_path = workdir.model_card_file(work_dir)  # in exported archives; made afresh for a work folder
    card = json.loads(card_path.read_text()) if card_path.is_file() else model_card(work_dir, cfg, calibration)
    models = load_models(work_dir, cfg)
    key = run_key(work_dir, cfg)
    states = {s.unit: _output_state(out_dir, s.unit, key) for s in subjects}
    if not overwrite:
        clash = [pid for pid, state in states.items() if state == "foreign"]
        if clash:
            raise UserError(f"{out_dir}: outputs for {', '.join(clash[:5])} already exist; pass --overwrite to "
                            "replace them or choose another OUT_DIR")
    _write_description(out_dir, source_uri, card)
    if on_start:
        on_start(len(subjects))
    todo = []
    for inputs in subjects:
        if states[inputs.unit] == "done" and not overwrite:
            if on_subject:
                on_subject(inputs.unit, "already done with this model (--overwrite redoes it)")
        else:
            todo.append(inputs)
    job = SubjectJob(out_dir, work_dir, cfg, calibration, device, key, card, work_root)
    results = []
    for pid, result, error in _run_subjects(job, todo, models, nprocs):
        if result is not None:
            results.append(result)
        if on_subject:
            on_subject(pid, error)
    index_page(out_dir / "index.html", _index_entries(out_dir, results))
    return results


@dataclass(frozen=True)
class SubjectJob:
    """What every subject of one ``detect`` run shares (picklable, for worker processes)."""

    out_dir: Path
    work_dir: Path
    cfg: Config
    calibration: dict
    device: str
    run_key: str
    card: dict
    work_root: Path | None

    def run(self, inputs: SubjectInputs, models) -> tuple[str, dict | None, str | None]:
        try:
            return inputs.unit, detect_subject(inputs, self.out_dir, self.cfg, models, self.calibration,
                                                         self.device, self.run_key, self.card, self.work_root), None
        except SubjectSkipped as exc:
            return inputs.unit, None, str(exc)


_worker: dict = {}


def _worker_start(job: SubjectJob, threads: int) -> None:
    torch.set_num_threads(threads)
    _worker.update(job=job, models=load_models(job.work_dir, job.cfg))


def _worker_run(inputs: SubjectInputs) -> tuple[str, dict | None, str | None]:
    return _worker["job"].run(inputs, _worker["models"])


def _run_subjects(job: SubjectJob, subjects: list[SubjectInputs], models,
                  nprocs: int) -> Iterator[tuple[str, dict | None, str | None]]:
    """(subject, result or None, skip reason or None) per subject, as each finishes. With ``nprocs`` > 1
    subjects run in that many worker processes (spawned; each loads the models once and uses its share
    of the CPU threads). Outputs are the same as serial: every subject's draws are seeded by its own id."""
    if nprocs <= 1 or len(subjects) <= 1:
        for inputs in subjects:
            yield job.run(inputs, models)
        return
    threads = max(1, torch.get_num_threads() // nprocs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(nprocs, len(subjects)), mp_context=context,
                             initializer=_worker_start, initargs=(job, threads)) as pool:
        for future in as_completed([pool.submit(_worker_run, inputs) for inputs in subjects]):
            yield future.result()


def _index_entries(out_dir: Path, results: list[dict]) -> list[dict]:
    """This run's subjects plus those of earlier runs into the same folder (by their pages)."""
    seen = {r["participant_id"]: r for r in results}
    for page in Path(out_dir).glob("sub-*.html"):
        pid = page.stem
        if pid not in seen:
            seen[pid] = {"participant_id": pid, "n_clusters": "see page", "top": "", "classifier": ""}
    return list(seen.values())


