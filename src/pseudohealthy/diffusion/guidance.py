"""Classifier guidance toward class 0 ("normal"), in two forms.

``eps`` (METHOD.md §3, Dhariwal & Nichol's DDIM form):
ε̂ = ε_θ(x_t, t | T1, y=0) − s · √(1 − ᾱ_t) · ∇_{x_t} log p_φ(y = 0 | x_t, t).
Subtracting the scaled gradient moves the sample toward higher p(y = 0), i.e. toward "healthy"; the
step it makes in x is about s · (1 − ᾱ_t) · ∇ per DDIM step, small at the low noise levels detection uses.

``x`` (the authors' code, CodePYJ/FCD-Detection ``ddpm2.py``, sampling mode ``cg``): after each DDIM
step, x ← x + s · ∇_x log p_φ(y = 0 | x, t), a step of s · ∇ whatever the noise level (their s = 5 over
100 steps: about 500 · ∇ in all).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pseudohealthy.diffusion.ddim import EpsFn
from pseudohealthy.diffusion.schedule import NoiseSchedule

# classifier_fn(x_t, t) -> logits (B, n_classes)
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def log_prob_gradient(classifier_fn: LogitsFn, x_t: torch.Tensor, t: torch.Tensor, target: int = 0) -> torch.Tensor:
    """∇_{x_t} log p(y = target | x_t, t), one backward pass for the whole batch."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_p = F.log_softmax(classifier_fn(x, t).float(), dim=1)[:, target]
        (grad,) = torch.autograd.grad(log_p.sum(), x)
    return grad


def guided_eps(eps_fn: EpsFn, classifier_fn: LogitsFn | None, schedule: NoiseSchedule, scale: float,
               target: int = 0) -> EpsFn:
    """Wrap ``eps_fn`` with guidance toward ``target`` (no-op when ``scale`` is 0 or no classifier)."""
    if classifier_fn is None or scale == 0:
        return eps_fn

    def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = eps_fn(x_t, t)
        grad = log_prob_gradient(classifier_fn, x_t, t, target)
        return eps - scale * (1 - schedule.alpha_bar_at(t)).sqrt() * grad

    return fn


def x_step(classifier_fn: LogitsFn, scale: float, target: int = 0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The ``x`` form: ``guide(x_t, t)`` returns s · ∇ log p(y = target | x_t, t), added to x after each step."""

    def guide(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return scale * log_prob_gradient(classifier_fn, x_t, t, target)

    return guide
