"""The methods the benchmark compares (METHOD.md §4): each one is a configuration of the same
pipeline, given as overrides of the work folder's config, never a copied pipeline.

Models are shared where the configurations agree: a model's folder is named after what defines it
(``training.trainer.model_name``), so e.g. the no-T1 ablation and Wolleb's baseline use one FLAIR-only
translator, and every ablation that keeps T1 conditioning uses the method's own translator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pseudohealthy.config import Config, load_work_config, with_overrides
from pseudohealthy.config.loader import deep_update
from pseudohealthy.errors import UserError


@dataclass(frozen=True)
class MethodSpec:
    name: str
    role: str  # method | ablation | baseline | reference
    title: str
    overrides: dict[str, Any] = field(default_factory=dict)


_NO_EXTRAS = {"guidance": "none", "histogram_matching": False}  # baselines are run as published

METHODS: dict[str, MethodSpec] = {m.name: m for m in [
    MethodSpec("full", "method", "location-guided pseudo-healthy synthesis (ours)"),
    MethodSpec("no_t1", "ablation", "no T1 conditioning", {"method": {"condition": "none"}}),
    MethodSpec("no_histmatch", "ablation", "no histogram matching", {"method": {"histogram_matching": False}}),
    MethodSpec("no_guidance", "ablation", "no location guidance", {"method": {"guidance": "none"}}),
    MethodSpec("binary_guidance", "ablation", "binary (normal/abnormal) guidance", {"method": {"guidance": "binary"}}),
    MethodSpec("denoising_ae", "baseline", "DenoisingAE (Kascenas et al. 2022)",
               {"method": {**_NO_EXTRAS, "detector": "autoencoder", "train_on": "healthy"}}),
    # Partial diffusion of healthy-trained simplex DDPM to L = 250 (Wyatt et al.'s best range starts there),
    # decoded stochastically (η = 1, DDPM-like) with simplex noise.
    MethodSpec("anoddpm", "baseline", "AnoDDPM, simplex noise (Wyatt et al. 2022)",
               {"method": {**_NO_EXTRAS, "condition": "none", "noise": "simplex", "encode": "noise",
                           "train_on": "healthy"},
                "diffusion": {"noise_level": 250, "eta": 1.0}}),
    # FLAIR-only DDPM trained on all slices, binary classifier guidance, deterministic DDIM both ways.
    MethodSpec("wolleb", "baseline", "DDPM-DDIM, binary guidance (Wolleb et al. 2022)",
               {"method": {"condition": "none", "guidance": "binary", "histogram_matching": False},
                "diffusion": {"eta": 0.0}}),
    # Conditioned on the input FLAIR, trained to remove synthetic anomalies from healthy slices; the
    # input is noised forward to L and denoised under that conditioning.
    MethodSpec("imgcond", "baseline", "ImgCondDDPM (Baugh et al. 2024)",
               {"method": {**_NO_EXTRAS, "condition": "flair", "synthetic_anomalies": True, "train_on": "healthy",
                           "encode": "noise"}}),
    MethodSpec("control_zscore", "reference", "voxel-wise FLAIR z-score vs training controls (no learning)",
               {"method": {**_NO_EXTRAS, "detector": "control_zscore"}}),
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


def method_config(work_dir: Path, spec: MethodSpec, overrides: dict[str, Any] | None = None) -> Config:
    """The work folder's config with the method's overrides, then the user's (``--set``) on top."""
    return with_overrides(load_work_config(work_dir), deep_update(spec.overrides, overrides or {}),
                          f"method {spec.name}")
