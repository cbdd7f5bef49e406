"""Classifier guidance toward class 0 ("normal"), METHOD.md §3:

ε̂ = ε_θ(x_t, t | T1, y=0) − s · √(1 − ᾱ_t) · ∇_{x_t} log p_φ(y = 0 | x_t, t).

Subtracting the scaled gradient moves the sample toward higher p(y = 0), i.e. toward "healthy".
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
