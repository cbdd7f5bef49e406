"""Deterministic DDIM (η = 0) inversion and sampling with explicit timestep pairs (METHOD.md §3).

Both directions use one update: x̂_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t, then
x_{t'} = √ᾱ_{t'} · x̂_0 + √(1−ᾱ_{t'}) · ε, with t' > t when encoding and t' < t when decoding.
Encoding and decoding use the same ladder, so they undo each other up to the step size.
Decoding may be stochastic (DDIM's η > 0, Song et al. 2021 eq. 16): fresh noise lets the model's
prior re-draw part of the content, which is what "heals" a lesion that exact inversion would keep.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pseudohealthy.diffusion.schedule import NoiseSchedule

# eps_fn(x_t, t) -> ε̂ for a batch at one timestep (t: (B,) long).
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# noise(shape) -> unit-variance noise of that shape on the CPU (e.g. ``diffusion.noise.RowNoise``).
NoiseSource = Callable[[tuple[int, ...]], torch.Tensor]


def timestep_ladder(noise_level: int, steps: int) -> list[int]:
    """``steps + 1`` distinct integer timesteps from 0 to ``noise_level``, evenly spaced."""
    if not 1 <= steps <= noise_level:
        raise ValueError(f"steps must be in 1..noise_level ({noise_level}), got {steps}")
    return [int(round(v)) for v in np.linspace(0, noise_level, steps + 1)]


def ddim_update(x_t: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_next: torch.Tensor,
                eta: float = 0.0, noise: NoiseSource | None = None) -> torch.Tensor:
    x0_hat = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if eta == 0:
        return a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
    # σ² = η² (1−ᾱ_{t'})/(1−ᾱ_t) (1 − ᾱ_t/ᾱ_{t'}); only meaningful going down (t' < t).
    sigma = eta * ((1 - a_next) / (1 - a_t) * (1 - a_t / a_next)).clamp(min=0).sqrt()
    if noise is None:
        raise ValueError("stochastic DDIM (eta > 0) needs a noise source")
    z = noise(tuple(x_t.shape)).to(x_t.device, x_t.dtype)
    return a_next.sqrt() * x0_hat + (1 - a_next - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * z


def _model_t(t: int, batch: int, device: torch.device) -> torch.Tensor:
    # The clean level t = 0 is never seen in training; evaluate the network at t = 1 there.
    return torch.full((batch,), max(t, 1), dtype=torch.long, device=device)


def ddim_encode(x0: torch.Tensor, eps_fn: EpsFn, schedule: NoiseSchedule, ladder: list[int]) -> torch.Tensor:
    """Invert clean images to the ladder's top noise level (no guidance)."""
    return ddim_encode_path(x0, eps_fn, schedule, ladder)[-1]


def ddim_encode_path(x0: torch.Tensor, eps_fn: EpsFn, schedule: NoiseSchedule, ladder: list[int]
                     ) -> list[torch.Tensor]:
    """The inversion's state at every level of the ladder (``[x0, x_{t1}, ..., x_L]``)."""
    path = [x0]
    for t, t_next in zip(ladder[:-1], ladder[1:]):
        tt = _model_t(t, x0.shape[0], x0.device)
        eps = eps_fn(path[-1], tt)
        path.append(ddim_update(path[-1], eps, schedule.alpha_bar_at(torch.full_like(tt, t)),
                                schedule.alpha_bar_at(torch.full_like(tt, t_next))))
    return path


# after_step(x_{t'}, x̂_0, t') -> x_{t'}: a change of the state after each decoding step (e.g. re-insertion).
StepHook = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def ddim_decode(x_top: torch.Tensor, eps_fn: EpsFn, schedule: NoiseSchedule, ladder: list[int],
                eta: float = 0.0, noise: NoiseSource | None = None, guide: EpsFn | None = None,
                after_step: StepHook | None = None) -> torch.Tensor:
    """Sample from the ladder's top noise level back to t = 0 (η = 0: deterministic; otherwise fresh
    noise from ``noise`` at every step, drawn on the CPU so a seed gives the same result on every device).
    ``guide(x, t)``: a shift added to x after each step, evaluated at the level it reached (x-space guidance);
    ``after_step``: applied last at every level above 0."""
    x = x_top
    for t, t_prev in zip(ladder[::-1][:-1], ladder[::-1][1:]):
        tt = _model_t(t, x.shape[0], x.device)
        eps = eps_fn(x, tt)
        a_t = schedule.alpha_bar_at(torch.full_like(tt, t))
        x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = ddim_update(x, eps, a_t, schedule.alpha_bar_at(torch.full_like(tt, t_prev)), eta, noise)
        if guide is not None:
            x = x + guide(x, _model_t(t_prev, x.shape[0], x.device))
        if after_step is not None and t_prev > 0:
            x = after_step(x, x0_hat, t_prev)
    return x


def one_step_x0(x0: torch.Tensor, eps_fn: EpsFn, schedule: NoiseSchedule, level: int,
                noise: NoiseSource, guide: EpsFn | None = None) -> torch.Tensor:
    """x̂_0 predicted in one network call from a fresh forward noising of ``x0`` to ``level``:
    x_L = √ᾱ_L x_0 + √(1−ᾱ_L) z, x̂_0 = (x_L − √(1−ᾱ_L) ε_θ(x_L, L)) / √ᾱ_L (``guide``: one x-space
    step on x_L first). Averaged over draws, an estimate of E[x_0 | x_L] for a twentieth of the network
    calls of a 10-step encode-and-decode draw."""
    tt = _model_t(level, x0.shape[0], x0.device)
    a = schedule.alpha_bar_at(tt)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise(tuple(x0.shape)).to(x0.device, x0.dtype)
    if guide is not None:
        x_t = x_t + guide(x_t, tt)
    return (x_t - (1 - a).sqrt() * eps_fn(x_t, tt)) / a.sqrt()
