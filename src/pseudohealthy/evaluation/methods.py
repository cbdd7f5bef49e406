"""The methods the benchmark compares (METHOD.md §4): each one is a configuration of the same
pipeline, given as overrides of the work folder's config, never a copied pipeline.

Models are shared where the configurations agree: a model's folder is named after what defines it
(``models.trained.model_name``), so e.g. Wolleb's baseline and its x-space form use one FLAIR-only
translator, and every ablation that keeps T1 conditioning uses the method's own translator.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pseudohealthy.config import Config, load_work_config, with_overrides
from pseudohealthy.config.loader import deep_update
from pseudohealthy.errors import UserError


@dataclass(frozen=True)
class MethodSpec:
    """One compared method: overrides of the work folder's config, and the grid of its own defining knobs
    that the benchmark sweeps on the validation subjects before testing (``tune``'s ``KEY=V1,V2`` format;
    the product of the axes; put the authors' or the cheaper value first, it wins ties)."""

    name: str
    role: str  # method | ablation | option (ours with a setting that is not a default) | baseline | reference
    title: str
    overrides: dict[str, Any] = field(default_factory=dict)
    grid: tuple[str, ...] = ()
    grid_source: str = ""  # where the grid's values come from (authors' code or paper)


# Baselines are run as published: no guidance or matching of ours, and no normative residual (E7, ours).
_NO_EXTRAS = {"guidance": "none", "histogram_matching": "none", "normative": False}
# Their diffusion models train on every noise level, as their authors' do (anoddpm and wolleb decode from
# L = 500-800); our presets train the method's translator on t <= 500 only (docs/experiments.md E4).
_UNIFORM_T = {"train_translator": {"max_timestep": None}}
_NO_REINSERT = {"reinsert": False}  # THOR-like reinsertion is ours (E6), not part of any baseline
# The method's own knobs: the noise level it inverts to and the guidance strength (quick preset: L = 200, s = 5).
_OURS = ("diffusion.noise_level=200,100,300", "diffusion.guidance_scale=5,20")
_OURS_SOURCE = "our preset (L = 200, s = 5) and one step either side"
# The no-model references' one knob: the map's smoothing.
_REFERENCE_GRID = ("method.smoothing_mm=3,0,6",)
_REFERENCE_SOURCE = "our map smoothing and one step either side"

METHODS: dict[str, MethodSpec] = {m.name: m for m in [
    MethodSpec("full", "method", "location-guided pseudo-healthy synthesis (ours)", grid=_OURS,
               grid_source=_OURS_SOURCE),
    MethodSpec("no_t1", "ablation", "no T1 conditioning", {"method": {"condition": "none"}}, _OURS, _OURS_SOURCE),
    MethodSpec("no_histmatch", "ablation", "no histogram matching", {"method": {"histogram_matching": "none"}},
               _OURS, _OURS_SOURCE),
    MethodSpec("no_guidance", "ablation", "no location guidance", {"method": {"guidance": "none"}},
               _OURS[:1], _OURS_SOURCE),
    MethodSpec("binary_guidance", "ablation", "binary (normal/abnormal) guidance",
               {"method": {"guidance": "binary"}}, _OURS, _OURS_SOURCE),
    MethodSpec("no_normative", "ablation", "no normative residual (the residual itself, not z-scored against the "
               "training controls')", {"method": {"normative": False}}, _OURS, _OURS_SOURCE),
    # Kascenas et al.'s code (AntanasKascenas/DenoisingAE, src/denoising.py): noise_std 0.2 on a 16 x 16 grid
    # upsampled to 128 px slices; 8 cells give their noise's spatial scale on our 64 px slices. Training knobs:
    # every point trains its own autoencoder.
    MethodSpec("denoising_ae", "baseline", "DenoisingAE (Kascenas et al. 2022)",
               {"method": {**_NO_EXTRAS, "detector": "autoencoder", "train_on": "healthy"}},
               ("method.denoising_noise_cells=16,8", "method.denoising_noise_std=0.2,0.4"),
               "authors' code: noise_std 0.2, noise_res 16 (on 128 px)"),
    # Healthy-trained simplex DDPM, forward noising to L, stochastic decoding (η = 1, DDPM-like) with simplex
    # noise. Wyatt et al.'s code (Julian-Wyatt/AnoDDPM, test_args/args28.json) uses sample_distance 800 for its
    # simplex model and draws t in [λ/2, λ] at evaluation; the paper's best MRI results use λ = 250.
    MethodSpec("anoddpm", "baseline", "AnoDDPM, simplex noise (Wyatt et al. 2022)",
               {"method": {**_NO_EXTRAS, "condition": "none", "noise": "simplex", "encode": "noise",
                           "train_on": "healthy"},
                "diffusion": {"noise_level": 250, "eta": 1.0, **_NO_REINSERT}, **_UNIFORM_T},
               ("diffusion.noise_level=250,500,800", "diffusion.steps=10,25"),
               "authors' code and paper: λ = 800 (args28.json), 250 (paper)"),
    # FLAIR-only DDPM trained on all slices, binary classifier guidance, deterministic DDIM both ways. Wolleb et
    # al.'s README (JuliaWolleb/diffusion-anomaly): --classifier_scale 100 --noise_level 500, ddim1000.
    MethodSpec("wolleb", "baseline", "DDPM-DDIM, binary guidance (Wolleb et al. 2022)",
               {"method": {"condition": "none", "guidance": "binary", "histogram_matching": "none", "normative": False},
                "diffusion": {"eta": 0.0, **_NO_REINSERT}, **_UNIFORM_T},
               ("diffusion.noise_level=500,200", "diffusion.guidance_scale=100,30,5"),
               "authors' README: classifier_scale 100, noise_level 500"),
    # The same baseline with guidance in the form of the FCD authors' code (Li et al., CodePYJ/FCD-Detection
    # ddpm2.py, mode cg: x += s * grad log p(y=0 | x) after every DDIM step, eta 0, s = 5).
    MethodSpec("wolleb_x", "baseline", "DDPM-DDIM, binary guidance in x-space (Wolleb et al. 2022, Li et al.'s form)",
               {"method": {"condition": "none", "guidance": "binary", "histogram_matching": "none", "normative": False},
                "diffusion": {"eta": 0.0, "guidance_form": "x", "guidance_scale": 5.0, **_NO_REINSERT},
                **_UNIFORM_T},
               ("diffusion.noise_level=500,200", "diffusion.guidance_scale=5,1,20"),
               "Li et al.'s code: s = 5 in x-space; Wolleb's README: noise_level 500"),
    # Conditioned on the input FLAIR, trained to remove synthetic anomalies from healthy slices; the input is
    # noised forward to L and denoised under that conditioning. No released code or default L was found (stored
    # index searched); the grid brackets ours.
    MethodSpec("imgcond", "baseline", "ImgCondDDPM (Baugh et al. 2024)",
               {"method": {**_NO_EXTRAS, "condition": "flair", "synthetic_anomalies": True, "train_on": "healthy",
                           "encode": "noise"}, "diffusion": _NO_REINSERT, **_UNIFORM_T},
               ("diffusion.noise_level=200,100,400",), "no authors' default found; brackets ours"),
    MethodSpec("control_zscore", "reference", "voxel-wise FLAIR z-score vs training controls (no learning)",
               {"method": {**_NO_EXTRAS, "detector": "control_zscore"}},
               _REFERENCE_GRID, _REFERENCE_SOURCE),
    # No model and no controls: the FLAIR's positive deviation from the subject's own mean brain intensity
    # through the same post-processing (smoothing, per-slice standardisation). What any method must beat.
    MethodSpec("flair_zscore", "reference", "the subject's own FLAIR, z-scored, same post-processing (no learning)",
               {"method": {**_NO_EXTRAS, "detector": "flair_zscore"}},
               _REFERENCE_GRID, _REFERENCE_SOURCE),
    # Scoring the brain without the CSF of the subject's T1 (docs/experiments.md E8: not a default, the lesion's
    # CNR CI touched 0) is a post-processing any map can have: ours and both references, each with it.
    MethodSpec("exclude_csf", "option", "ours, the brain scored without its CSF (from the T1)",
               {"method": {"exclude_csf": True}}, _OURS, _OURS_SOURCE),
    MethodSpec("control_zscore_nocsf", "reference", "voxel-wise FLAIR z-score vs training controls, without the CSF",
               {"method": {**_NO_EXTRAS, "detector": "control_zscore", "exclude_csf": True}},
               _REFERENCE_GRID, _REFERENCE_SOURCE),
    MethodSpec("flair_zscore_nocsf", "reference", "the subject's own FLAIR, z-scored, without the CSF",
               {"method": {**_NO_EXTRAS, "detector": "flair_zscore", "exclude_csf": True}},
               _REFERENCE_GRID, _REFERENCE_SOURCE),
]}


def select_methods(names: str) -> list[MethodSpec]:
    """``all``, or a comma-separated list of names from ``METHODS``."""
    if names.strip() == "all":
        return list(METHODS.values())
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in METHODS]
    if unknown or not chosen:
        raise UserError(f"unknown method(s) {', '.join(unknown) or names!r}; choose 'all' or from: "
                        f"{', '.join(METHODS)}")
    return [METHODS[n] for n in dict.fromkeys(chosen)]


TRANSFER_NAME = "full_transfer"


def transfer_spec(model: Path) -> MethodSpec:
    """Our method with networks trained on another dataset (``model``: a work folder or MODEL.zip), used as
    they are: the generalisation row. Its settings and threshold are still chosen on this dataset's
    validation subjects, as every method's are, so the row differs from ``full`` only in the training data."""
    return replace(METHODS["full"], name=TRANSFER_NAME, role="generalisation",
                   title=f"ours, networks of {Path(model).name} (trained on other subjects, not retrained)")


def method_config(work_dir: Path, spec: MethodSpec, overrides: dict[str, Any] | None = None) -> Config:
    """The work folder's config with the method's overrides, then the user's (``--set``) on top."""
    return with_overrides(load_work_config(work_dir), deep_update(spec.overrides, overrides or {}),
                          f"method {spec.name}")
