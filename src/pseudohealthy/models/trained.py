"""A trained model as a work folder holds it: which networks a configuration's detector needs, the folder
each lies in, how it loads, the calibration chosen for them, and the keys of what their draws depend on.

``training`` writes what is read here, ``detect`` runs it, ``bundle`` packs it into one file and
``evaluation`` scores it: all of them reach a trained model through this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pseudohealthy import workdir
from pseudohealthy.anomaly.normative import NormativeStats
from pseudohealthy.baselines.control_zscore import ControlStats
from pseudohealthy.config import Config, with_overrides
from pseudohealthy.config.schema import MethodConfig
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_json_atomic
from pseudohealthy.models.checkpoint import load_checkpoint
from pseudohealthy.models.networks import build_model, classifier_classes


def model_name(kind: str, cfg: Config) -> str:
    """The folder name of the ``kind`` model that ``cfg`` needs: the kind, plus each training choice that
    makes a baseline's or an ablation's network differ (conditioning, noise, slices, noise levels learnt), so
    they train beside the method's model, never over it. The budget (iterations, learning rate, batch) and the
    architecture are not in it: a folder holds one of each; change them in another work folder."""
    method = cfg.method
    parts = [kind]
    if kind == "translator":
        parts += [method.condition] if method.condition != "t1" else []
        parts += ["simplex"] if method.noise == "simplex" else []
        parts += ["synthetic"] if method.synthetic_anomalies else []
    if kind in ("translator", "autoencoder") and method.train_on == "healthy":
        parts.append("healthy")
    defaults = MethodConfig()
    if kind == "autoencoder" and (method.denoising_noise_std, method.denoising_noise_cells) != (
            defaults.denoising_noise_std, defaults.denoising_noise_cells):
        parts.append(f"noise{method.denoising_noise_std:g}x{method.denoising_noise_cells}")
    if kind == "classifier" and classifier_classes(cfg) == 2:
        parts.append("binary")
    if kind in ("translator", "classifier"):  # the noise levels it learnt, when not all of [1, T]
        trained_to = (cfg.train_classifier if kind == "classifier" else cfg.train_translator).max_timestep
        if trained_to is not None and trained_to < cfg.diffusion.timesteps:
            parts.append(f"t{trained_to}")
    return "-".join(parts)


def model_dir(work_dir: Path, kind: str, cfg: Config) -> Path:
    return workdir.model_dir(work_dir, model_name(kind, cfg))


def network_signature(cfg: Config, kind: str) -> dict:
    """What a checkpoint must match to be resumed or loaded: network, slice size and model variant."""
    net = cfg.classifier if kind == "classifier" else cfg.translator
    return {"network": net.model_dump(mode="json"), "image_size": cfg.data.image_size,
            "variant": model_name(kind, cfg)}


def load_trained(work_dir: Path, cfg: Config, kind: str, use_ema: bool = True) -> torch.nn.Module:
    """The trained network (EMA weights by default) in eval mode; checks it matches ``cfg``."""
    ckpt_path = workdir.checkpoint_file(model_dir(work_dir, kind, cfg))
    signature = network_signature(cfg, kind)
    ckpt = load_checkpoint(ckpt_path, expect_kind=kind, expect_preset=signature["network"])
    net = build_model(kind, cfg)
    net.load_state_dict(ckpt["ema" if use_ema else "model"])
    return net.eval()


def required_models(cfg: Config) -> list[str]:
    """The trained model kinds ``cfg``'s detector uses (their folders: ``model_name``)."""
    if cfg.method.detector in ("control_zscore", "flair_zscore"):
        return []
    if cfg.method.detector == "autoencoder":
        return ["autoencoder"]
    return ["translator"] + (["classifier"] if cfg.method.guidance != "none" else [])


@dataclass
class Models:
    """What a configuration's detector needs (``method.detector``); the others are None."""

    translator: torch.nn.Module | None = None
    classifier: torch.nn.Module | None = None  # None when guidance is off
    autoencoder: torch.nn.Module | None = None
    controls: ControlStats | None = None
    normative: NormativeStats | None = None  # method.normative: the training controls' residual stats


def load_networks(work_dir: Path, cfg: Config) -> Models:
    """The trained networks ``cfg``'s detector uses, each checked against ``cfg``; the statistics fitted on
    the work folder's subjects are left None (``detect.pipeline.load_models`` adds them)."""
    models = Models()
    for kind in required_models(cfg):
        if not workdir.checkpoint_file(model_dir(work_dir, kind, cfg)).is_file():
            hint = " (or set method.guidance: none)" if kind == "classifier" else ""
            raise UserError(f"{model_dir(work_dir, kind, cfg)}: no trained {kind} for this configuration; run "
                            f"`pseudohealthy train {work_dir} --model {kind}` with it{hint}")
        setattr(models, kind, load_trained(work_dir, cfg, kind))
    return models


# Method settings applied after the draws; everything else (and the networks) decides what the draws are.
POST_DRAW = frozenset({"histogram_matching", "normative", "normative_draws", "anomaly", "exclude_csf", "smoothing_mm",
                       "slice_standardise", "min_cluster_mm3", "rank_by", "confidence_radius_mm",
                       "max_control_clusters"})


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weights_digest(path: Path) -> str:
    """The EMA weights the detector runs, hashed: equal for a work folder's checkpoint and for its slimmed copy
    in an exported model (whose file bytes differ: the optimiser state is left out)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(load_checkpoint(path)["ema"].items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def draw_key(work_dir: Path, cfg: Config, keep: frozenset[str] = frozenset(),
             digest: Callable[[Path], str] = file_digest) -> str:
    """A digest of what a subject's draws depend on: the networks' checkpoints (``digest`` of each) and every
    setting but the post-draw ones (except those in ``keep``) and the report's."""
    settings = cfg.model_dump(mode="json")
    settings.pop("report")
    for key in POST_DRAW - keep:
        settings["method"].pop(key)
    digests = [digest(workdir.checkpoint_file(model_dir(work_dir, kind, cfg))) for kind in required_models(cfg)]
    return hashlib.sha256(json.dumps({"settings": settings, "models": digests}, sort_keys=True).encode()).hexdigest()


def normative_key(work_dir: Path, cfg: Config) -> str:
    """What the normative stats depend on: the draws (``method.normative_draws`` of them per control, whatever
    the detection's N), how they are matched to the FLAIR and the networks' weights (the same key in a work
    folder and in the model exported from it)."""
    fit = with_overrides(cfg, {"diffusion": {"samples": cfg.method.normative_draws}}, "normative fit")
    return draw_key(work_dir, fit, keep=frozenset({"histogram_matching", "normative_draws"}), digest=weights_digest)


def save_calibration(work_dir: Path, calibration: dict) -> None:
    write_json_atomic(workdir.calibration_file(work_dir), calibration)


def load_calibration(work_dir: Path) -> dict:
    path = workdir.calibration_file(work_dir)
    if not path.is_file():
        raise UserError(f"{path}: not found; run `pseudohealthy calibrate {work_dir}` first")
    return json.loads(path.read_text())
