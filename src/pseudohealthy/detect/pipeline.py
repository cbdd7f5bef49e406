"""The method on one preprocessed subject: the models a config needs, and ``analyse``.

Template-space steps are shared by ``calibrate`` (validation subjects, already preprocessed) and
``detect`` (new subjects, preprocessed on the fly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy import workdir
from pseudohealthy.anomaly.maps import anomaly_map, histogram_match
from pseudohealthy.anomaly.normative import NormativeStats, fit_normative, load_normative, save_normative
from pseudohealthy.config import Config, with_overrides
from pseudohealthy.baselines.control_zscore import control_zscore, fit_control_stats
from pseudohealthy.detect.synthesis import Synthesis, brain_slices, reconstruct, synthesize
from pseudohealthy.errors import UserError
from pseudohealthy.data.splits import read_splits
from pseudohealthy.models.trained import Models, load_networks, normative_key


@dataclass
class SubjectMaps:
    """Template-grid results for one subject (volumes (H, W, Z))."""

    flair: np.ndarray
    pseudo_healthy: np.ndarray  # mean of the samples, after histogram matching when enabled
    anomaly: np.ndarray  # the anomaly map: mean of ``sample_maps``
    brain: np.ndarray
    lesion: np.ndarray  # bool, from the prepared lesion mask (all False for controls / unknown)
    synthesis: Synthesis
    sample_maps: np.ndarray | None = None  # (N, H, W, Z) single-sample maps; None: just ``anomaly`` (N = 1)

    def __post_init__(self) -> None:
        if self.sample_maps is None:
            self.sample_maps = self.anomaly[None]


def load_models(work_dir: Path, cfg: Config, device: str = "cpu") -> Models:
    """What ``cfg``'s detector needs from WORK_DIR: its trained networks (``models.trained.load_networks``),
    then the statistics fitted on the work folder's training controls: the control z-score's and, with
    ``method.normative``, the normative residual's (``normative_for``, which runs the detector itself)."""
    models = load_networks(work_dir, cfg)
    if cfg.method.detector == "control_zscore":
        models.controls = fit_control_stats(work_dir)
    if cfg.method.normative:
        models.normative = normative_for(work_dir, models, cfg, device)
    return models


def normative_for(work_dir: Path, models: Models, cfg: Config, device: str = "cpu") -> NormativeStats:
    """The normative residual's stats for ``cfg``: WORK_DIR/normative.npz when it was fitted for these
    settings and networks, else fitted now on the work folder's training controls (and saved)."""
    path = workdir.normative_file(work_dir)
    key = normative_key(work_dir, cfg)
    if path.is_file():
        stats, stored = load_normative(path)
        if stored == key:
            return stats
    controls = [pid for pid, group, role in read_splits(work_dir) if group == "hc" and role == "train"] \
        if workdir.splits_file(work_dir).is_file() else []
    if len(controls) < 2:
        raise UserError(f"{work_dir}: method.normative needs the residuals of at least 2 training controls under "
                        "these settings; none are stored for them and the folder has no training controls to fit "
                        "them on (an exported model keeps the settings it was calibrated with)")
    residuals, brains = [], []
    for pid in controls:
        volumes = SubjectVolumes.load(workdir.subject_dir(work_dir, pid))
        maps = maps_from_synthesis(volumes, pseudo_healthy(volumes, models, cfg, device), models,
                                   with_overrides(cfg, {"method": {"normative": False}}))
        residuals.append(volumes.flair - maps.pseudo_healthy)
        brains.append(maps.brain)
    stats = fit_normative(residuals, brains, controls)
    save_normative(path, stats, key)
    return stats


def _volume(subject_dir: Path, name: str) -> np.ndarray:
    return np.asanyarray(nib.load(workdir.volume_file(subject_dir, name)).dataobj)


def analyse(subject_dir: Path, models: Models, cfg: Config, device: str = "cpu", **overrides) -> SubjectMaps:
    """Pseudo-healthy FLAIR and anomaly map for a preprocessed subject (template grid).

    With N samples (``diffusion.samples``) each pseudo-healthy draw is histogram-matched and turned
    into its own anomaly map; the subject's map is their mean (the Monte-Carlo estimate of the expected
    map, whose draw-to-draw variance falls as 1/N) and the N maps are kept for the uncertainty outputs.
    The subject id (the folder's name) seeds the draws. ``overrides``: the sampler's keywords
    (``detect.synthesis.synthesize``) for this call, and ``samples``, another N than ``cfg``'s.
    """
    volumes = SubjectVolumes.load(subject_dir)
    return maps_from_synthesis(volumes, pseudo_healthy(volumes, models, cfg, device, **overrides), models, cfg)


@dataclass
class SubjectVolumes:
    """A preprocessed subject's template-grid inputs."""

    name: str  # the unit's folder name, which seeds its draws
    flair: np.ndarray
    t1: np.ndarray
    brain: np.ndarray  # bool
    lesion: np.ndarray  # bool, from the prepared lesion mask (all False for controls / unknown)

    @classmethod
    def load(cls, subject_dir: Path) -> "SubjectVolumes":
        subject_dir = Path(subject_dir)
        return cls(subject_dir.name, _volume(subject_dir, "flair").astype(np.float32),
                   _volume(subject_dir, "t1").astype(np.float32), _volume(subject_dir, "brain") > 0,
                   _volume(subject_dir, "lesion") > 0.5)


def pseudo_healthy(volumes: SubjectVolumes, models: Models, cfg: Config, device: str = "cpu",
                   **overrides) -> Synthesis:
    """The detector's pseudo-healthy FLAIR draws (the expensive part of ``analyse``)."""
    if overrides.get("samples") is not None:  # the sampler reads N from the config alone
        cfg = with_overrides(cfg, {"diffusion": {"samples": overrides["samples"]}}, "samples")
    overrides.pop("samples", None)
    flair, brain = volumes.flair, volumes.brain
    if cfg.method.detector == "control_zscore":  # the "pseudo-healthy" FLAIR is the training controls' mean
        return Synthesis(models.controls.mean[None], np.zeros((brain.shape[2], 1), np.float32),
                         brain_slices(brain, cfg.data.min_brain_fraction))
    if cfg.method.detector == "flair_zscore":  # the "pseudo-healthy" FLAIR is the subject's own mean brain
        return Synthesis(np.full((1, *flair.shape), flair[brain].mean(), np.float32),
                         np.zeros((brain.shape[2], 1), np.float32), brain_slices(brain, cfg.data.min_brain_fraction))
    if cfg.method.detector == "autoencoder":
        return reconstruct(flair, brain, models.autoencoder, cfg, device, overrides.get("batch_size"))
    return synthesize(flair, volumes.t1, brain, models, cfg, subject=volumes.name, device=device, **overrides)


def maps_from_synthesis(volumes: SubjectVolumes, syn: Synthesis, models: Models, cfg: Config) -> SubjectMaps:
    """Histogram matching, difference and post-processing of each draw (``method``); cheap next to the draws."""
    flair = volumes.flair
    # Slices with too little brain are not synthesised (nor trained on); they are not scored either.
    processed = np.zeros(volumes.brain.shape[2], bool)
    processed[syn.slices] = True
    brain = volumes.brain & processed[None, None, :]
    if cfg.method.detector == "control_zscore":
        pseudo = syn.samples
        differences = control_zscore(flair, models.controls)[None]  # in units of the controls' std
    else:
        pseudo = np.stack([histogram_match(p, flair, brain, mode=cfg.method.histogram_matching)
                           for p in syn.samples])
        differences = flair[None] - pseudo
        if cfg.method.normative:
            if models.normative is None:
                raise UserError("method.normative is on but no normative stats were loaded (load_models fits them)")
            differences = np.stack([models.normative.zscore(d) for d in differences])
    sample_maps = np.stack([anomaly_map(d, brain, cfg.method.anomaly, smoothing_voxels(cfg),
                                        cfg.method.slice_standardise) for d in differences])
    return SubjectMaps(flair, pseudo.mean(axis=0), sample_maps.mean(axis=0), brain, volumes.lesion, syn, sample_maps)


def smoothing_voxels(cfg: Config) -> float:
    return cfg.method.smoothing_mm / cfg.data.template_voxel_mm
