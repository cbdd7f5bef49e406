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
from pseudohealthy.anomaly.tissue import csf_mask
from pseudohealthy.config import Config, with_overrides
from pseudohealthy.baselines.control_zscore import control_zscore, fit_control_stats
from pseudohealthy.detect.synthesis import Synthesis, brain_slices, reconstruct, synthesize
from pseudohealthy.errors import UserError
from pseudohealthy.data.splits import training_controls
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
    scored: np.ndarray | None = None  # bool: where the map may be above 0 (``method.exclude_csf``); None: ``brain``

    def __post_init__(self) -> None:
        if self.sample_maps is None:
            self.sample_maps = self.anomaly[None]
        if self.scored is None:
            self.scored = self.brain


def load_models(work_dir: Path, cfg: Config, device: str = "cpu", data_dir: Path | None = None) -> Models:
    """What ``cfg``'s detector needs: its trained networks from WORK_DIR (``models.trained.load_networks``),
    then the statistics fitted on the training controls of ``data_dir`` (default WORK_DIR): the control
    z-score's and, with ``method.normative``, the normative residual's (``normative_for``, which runs the
    detector itself). ``data_dir`` differs for networks trained on another dataset (the transfer row)."""
    models = load_networks(work_dir, cfg)
    data_dir = Path(data_dir) if data_dir else Path(work_dir)
    if cfg.method.detector == "control_zscore":
        models.controls = fit_control_stats(data_dir)
    if cfg.method.normative:
        models.normative = normative_for(data_dir, models, cfg, device, networks_dir=work_dir)
    return models


def normative_for(work_dir: Path, models: Models, cfg: Config, device: str = "cpu",
                  networks_dir: Path | None = None) -> NormativeStats:
    """The normative residual's stats for ``cfg`` and the networks of ``networks_dir`` (default WORK_DIR): those
    kept in WORK_DIR/normative/<key>.npz when they were fitted on WORK_DIR's present training controls, else
    fitted now on them (and kept); where WORK_DIR has fewer than 2, those kept beside the networks (an
    exported model carries the fit of its calibrated settings).

    Detection z-scores each draw's residual, so the stats are those of single draws: every one of the
    ``method.normative_draws`` draws of every control is one sample (the mean of N draws would have a smaller
    SD than the residual it is held against)."""
    networks_dir = Path(networks_dir or work_dir)
    key = normative_key(networks_dir, cfg)
    controls = training_controls(work_dir) if workdir.splits_file(work_dir).is_file() else []  # none in a model
    for folder in dict.fromkeys([Path(work_dir), networks_dir]):
        path = workdir.normative_file(folder, key)
        if path.is_file():
            stats, stored = load_normative(path)
            if stored == key and (len(controls) < 2 or sorted(stats.participants) == sorted(controls)):
                return stats
    if len(controls) < 2:
        raise UserError(f"{work_dir}: method.normative needs the residuals of at least 2 training controls under "
                        "these settings; none are stored for them and the folder has no training controls to fit "
                        "them on (an exported model keeps the settings it was calibrated with; set "
                        "method.normative=false to detect without it)")
    fit = with_overrides(cfg, {"diffusion": {"samples": cfg.method.normative_draws},
                               "method": {"normative": False}}, "normative fit")
    residuals, brains = [], []
    for pid in controls:
        volumes = SubjectVolumes.load(workdir.subject_dir(work_dir, pid))
        pseudo, brain = matched_draws(volumes, pseudo_healthy(volumes, models, fit, device), fit)
        residuals.extend(volumes.flair[None] - pseudo)
        brains.extend([brain] * len(pseudo))
    stats = fit_normative(residuals, brains, controls)
    save_normative(workdir.normative_file(work_dir, key), stats, key)
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
    pseudo, brain = matched_draws(volumes, syn, cfg)
    if cfg.method.detector == "control_zscore":
        differences = control_zscore(flair, models.controls)[None]  # in units of the controls' std
    else:
        differences = flair[None] - pseudo
        if cfg.method.normative:
            if models.normative is None:
                raise UserError("method.normative is on but no normative stats were loaded (load_models fits them)")
            differences = np.stack([models.normative.zscore(d) for d in differences])
    scored = brain & ~csf_mask(volumes.t1, brain) if cfg.method.exclude_csf else brain
    sample_maps = np.stack([anomaly_map(d, scored, cfg.method.anomaly, smoothing_voxels(cfg),
                                        cfg.method.slice_standardise) for d in differences])
    return SubjectMaps(flair, pseudo.mean(axis=0), sample_maps.mean(axis=0), brain, volumes.lesion, syn, sample_maps,
                       scored)


def matched_draws(volumes: SubjectVolumes, syn: Synthesis, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Each draw matched to the FLAIR's histogram (``method.histogram_matching``; the control z-score's mean
    as it is), and the brain voxels that are scored: slices with too little brain are not synthesised (nor
    trained on), so they are not scored either."""
    processed = np.zeros(volumes.brain.shape[2], bool)
    processed[syn.slices] = True
    brain = volumes.brain & processed[None, None, :]
    if cfg.method.detector == "control_zscore":
        return syn.samples, brain
    return np.stack([histogram_match(p, volumes.flair, brain, mode=cfg.method.histogram_matching)
                     for p in syn.samples]), brain


def smoothing_voxels(cfg: Config) -> float:
    return cfg.method.smoothing_mm / cfg.data.template_voxel_mm
