"""Pseudo-healthy FLAIR for a whole subject: batched DDIM inversion to L, guided sampling back to 0.

All slices of a subject are processed together in batches; the classifier gradient is one backward
pass per step for the batch. Random draws are per (slice, sample) row (``diffusion.noise``), so a
subject's result does not depend on the batch it ran in. Shapes: volumes (H, W, Z) on the template grid, range [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pseudohealthy.config import Config
from pseudohealthy.diffusion.ddim import ddim_decode, ddim_encode_path, one_step_x0, timestep_ladder
from pseudohealthy.diffusion.guidance import guided_eps, x_step
from pseudohealthy.diffusion.noise import RowNoise, gaussian_noise, row_seed
from pseudohealthy.diffusion.schedule import NoiseSchedule
from pseudohealthy.diffusion.simplex import simplex_noise
from pseudohealthy.errors import UserError
from pseudohealthy.models.networks import translator_input
from pseudohealthy.models.trained import Models


@dataclass
class Synthesis:
    samples: np.ndarray  # (N, H, W, Z): N pseudo-healthy draws, -1 outside processed slices
    class_probabilities: np.ndarray  # (Z, n_classes) classifier on the real FLAIR at t = 1 (0 where unused)
    slices: np.ndarray  # the z indices processed


def brain_slices(brain: np.ndarray, min_fraction: float) -> np.ndarray:
    fraction = brain.reshape(-1, brain.shape[2]).mean(axis=0)
    return np.flatnonzero(fraction >= min_fraction)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision``; ``auto`` picks bfloat16 only where it is native (CUDA with
    bf16 support, or a CPU with AVX512-BF16/AMX), since emulated bf16 is slower than float32."""
    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def _to_batch(volume: np.ndarray, zs: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(volume[:, :, zs].transpose(2, 0, 1), np.float32)).unsqueeze(1).to(device)


def is_stochastic(cfg: Config) -> bool:
    """Whether the decode draws noise (η > 0, or AnoDDPM's forward noising): only then do several
    samples differ. Deterministic detectors give one sample whatever ``diffusion.samples`` says."""
    if cfg.method.detector != "diffusion":
        return False
    return cfg.method.encode == "noise" or cfg.diffusion.estimator == "one_step" or \
        cfg.diffusion.eta > 0


@torch.no_grad()
def synthesize(flair: np.ndarray, t1: np.ndarray, brain: np.ndarray, models: Models, cfg: Config,
               subject: str = "", device: str = "cpu", batch_size: int | None = None,
               seed: int | None = None) -> Synthesis:
    """Run the method on one subject's template-space volumes, as ``cfg`` says (a validated config: every
    setting of the sampler comes from it, so none can bypass its checks); ``seed`` defaults to ``cfg.seed``.

    Each slice is inverted once to L and decoded N = ``diffusion.samples`` times. Every random
    draw of a (slice, sample) row comes from its own generator seeded by (seed, ``subject``, slice index,
    sample index), so the result does not depend on ``batch_size`` or on what else is processed.
    ``batch_size`` bounds the rows of one network call (slices x samples).
    """
    dev = torch.device(device)
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    ladder = timestep_ladder(cfg.diffusion.noise_level, cfg.diffusion.steps)
    scale = cfg.diffusion.guidance_scale
    if cfg.method.guidance == "none":
        scale = 0.0
    eta = cfg.diffusion.eta
    n_samples = cfg.diffusion.samples if is_stochastic(cfg) else 1
    batch_size = batch_size or cfg.diffusion.batch_size
    precision = inference_dtype(cfg.diffusion.precision, dev)
    if precision is torch.float16 and dev.type != "cuda":
        raise UserError("diffusion.precision float16 needs a CUDA device; use bfloat16 or float32 on CPU")
    autocast = torch.autocast(dev.type, dtype=precision, enabled=precision is not torch.float32)
    seed = cfg.seed if seed is None else seed
    noise_fn = simplex_noise if cfg.method.noise == "simplex" else gaussian_noise
    zs = brain_slices(brain, cfg.data.min_brain_fraction)
    out = np.full((n_samples, *flair.shape), -1.0, np.float32)
    n_classes = 2 if cfg.method.guidance == "binary" else 9
    probs = np.zeros((flair.shape[2], n_classes), np.float32)
    translator = models.translator.to(dev).eval()
    classifier = models.classifier.to(dev).eval() if models.classifier is not None else None
    per_chunk = max(1, batch_size // n_samples)  # slices per chunk, so one call holds <= batch_size rows
    for start in range(0, len(zs), per_chunk):
        chunk = zs[start:start + per_chunk]
        x0, t1_slices = _to_batch(flair, chunk, dev), _to_batch(t1, chunk, dev)
        # Rows are slice-major: (z0, sample 0), (z0, sample 1), ..., (z1, sample 0), ...
        noise = RowNoise([row_seed(seed, subject, z, k) for z in chunk for k in range(n_samples)], noise_fn)

        # Conditioning per row count: one row per slice while encoding, n_samples rows while decoding.
        conditions = {rows: (t1_slices.repeat_interleave(rows, 0), x0.repeat_interleave(rows, 0))
                      for rows in {1, n_samples}}

        def eps_fn(x, t):
            t1_rows, x0_rows = conditions[x.shape[0] // len(chunk)]
            with autocast:
                return translator(translator_input(x, t1_rows, x0_rows, cfg), t,
                                  class_labels=torch.zeros(x.shape[0], dtype=torch.long, device=dev)).float()

        def classify(x, t):
            with autocast:
                return classifier(x, t).float()

        guide = None
        if classifier is not None and scale > 0 and cfg.diffusion.guidance_form == "x":
            decode_eps, guide = eps_fn, x_step(classify, scale)
        else:
            decode_eps = guided_eps(eps_fn, classify if classifier is not None else None, schedule, scale)
        x0_rows = conditions[n_samples][1]
        if cfg.diffusion.estimator == "one_step":
            healed = one_step_x0(x0_rows, decode_eps, schedule, ladder[-1], noise, guide)
        else:
            path = None
            if cfg.method.encode == "invert":
                path = ddim_encode_path(x0, eps_fn, schedule, ladder)
                x_top = path[-1].repeat_interleave(n_samples, 0)
            else:  # AnoDDPM: partial forward diffusion with fresh noise
                top = torch.full((len(x0_rows),), ladder[-1], dtype=torch.long, device=dev)
                x_top = schedule.q_sample(x0_rows, top, noise(tuple(x0_rows.shape)).to(dev))
            reinsert = None
            if cfg.diffusion.reinsert:  # the config allows it with method.encode: invert only, so path is there
                reinsert = reinsertion({t: x.repeat_interleave(n_samples, 0) for t, x in zip(ladder, path)}, x0_rows)
            healed = ddim_decode(x_top, decode_eps, schedule, ladder, eta, noise, guide, reinsert)
        healed = healed[:, 0].reshape(len(chunk), n_samples, *healed.shape[2:]).cpu().numpy()
        out[:, :, :, chunk] = healed.transpose(1, 2, 3, 0)
        if classifier is not None:
            t_small = torch.ones(len(chunk), dtype=torch.long, device=dev)
            probs[chunk] = torch.softmax(classify(x0, t_small), dim=1).cpu().numpy()
    return Synthesis(out, probs, zs)


# Re-insertion: residuals at or above this quantile of a slice's brain residuals are redrawn in full.
REINSERT_QUANTILE = 0.95


def reinsertion(path: dict[int, torch.Tensor], x0: torch.Tensor):
    """The decode hook of ``diffusion.reinsert`` (after THOR, Bercea et al. 2024): at level t, each pixel
    becomes w·x_t + (1 − w)·x_t^inv, the inversion's own state at t, with w = min(1, r / r_q) from the
    residual r = |x̂_0 − x_0| (3 × 3 mean) and r_q its ``REINSERT_QUANTILE`` over the slice's brain
    (pixels above −1). Where the prediction agrees with the input, the input's trajectory is kept;
    where it differs most, the model redraws."""
    brain = x0 > -1 + 1e-6

    def hook(x_t: torch.Tensor, x0_hat: torch.Tensor, t: int) -> torch.Tensor:
        r = torch.nn.functional.avg_pool2d((x0_hat - x0).abs(), 3, stride=1, padding=1, count_include_pad=False)
        rq = torch.stack([torch.quantile(r[i][brain[i]], REINSERT_QUANTILE) if brain[i].any() else r.new_tensor(1.0)
                          for i in range(len(r))]).view(-1, 1, 1, 1)
        w = (r / rq.clamp(min=1e-6)).clamp(max=1.0)
        return w * x_t + (1 - w) * path[t]

    return hook


@torch.no_grad()
def reconstruct(flair: np.ndarray, brain: np.ndarray, autoencoder: torch.nn.Module, cfg: Config,
                device: str = "cpu", batch_size: int | None = None) -> Synthesis:
    """The denoising autoencoder baseline's "pseudo-healthy" FLAIR: its reconstruction of each slice."""
    dev = torch.device(device)
    zs = brain_slices(brain, cfg.data.min_brain_fraction)
    out = np.full(flair.shape, -1.0, np.float32)
    batch_size = batch_size or cfg.diffusion.batch_size
    net = autoencoder.to(dev).eval()
    for start in range(0, len(zs), batch_size):
        chunk = zs[start:start + batch_size]
        out[:, :, chunk] = net(_to_batch(flair, chunk, dev))[:, 0].float().cpu().numpy().transpose(1, 2, 0)
    return Synthesis(out[None], np.zeros((flair.shape[2], 1), np.float32), zs)
