"""The sampler against closed-form answers, and the direction of guidance."""

from __future__ import annotations

import pytest
import torch

from pseudohealthy.diffusion.ddim import ddim_decode, ddim_encode, ddim_encode_path, one_step_x0, timestep_ladder
from pseudohealthy.diffusion.guidance import guided_eps, log_prob_gradient, x_step
from pseudohealthy.diffusion.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule(1000, 0.0015, 0.0155)
MU, SIGMA = 0.3, 0.5


def gaussian_eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Optimal ε-predictor for data ~ N(MU, SIGMA²) per pixel: E[ε | x_t] in closed form."""
    a = SCHEDULE.alpha_bar_at(t)
    return (1 - a).sqrt() * (x_t - a.sqrt() * MU) / (a * SIGMA**2 + 1 - a)


def test_schedule_matches_hand_computation():
    betas = torch.linspace(0.0015, 0.0155, 1000, dtype=torch.float64)
    assert SCHEDULE.alpha_bar[0] == 1.0
    assert torch.isclose(SCHEDULE.alpha_bar[1], 1 - betas[0])
    assert torch.isclose(SCHEDULE.alpha_bar[2], (1 - betas[0]) * (1 - betas[1]))
    x0, noise = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    out = SCHEDULE.q_sample(x0, torch.tensor([2]), noise)
    assert torch.allclose(out, SCHEDULE.alpha_bar[2].sqrt().float() * x0)


def test_ladder():
    assert timestep_ladder(50, 5) == [0, 10, 20, 30, 40, 50]
    assert timestep_ladder(100, 100) == list(range(101))
    with pytest.raises(ValueError):
        timestep_ladder(10, 11)


def test_encoding_gaussian_data_follows_the_probability_flow():
    """For Gaussian data the DDIM ODE keeps each point's quantile: x_t = √ᾱ μ + √(ᾱσ²+1−ᾱ)·z."""
    x0 = MU + SIGMA * torch.linspace(-2, 2, 16).view(1, 1, 4, 4)
    level = 300
    a = SCHEDULE.alpha_bar[level].float()
    expected = a.sqrt() * MU + (a * SIGMA**2 + 1 - a).sqrt() * (x0 - MU) / SIGMA
    errors = [(ddim_encode(x0, gaussian_eps, SCHEDULE, timestep_ladder(level, k)) - expected).abs().max().item()
              for k in (30, 100, 300)]
    assert errors[-1] < 5e-3
    assert errors[0] > errors[1] > errors[2]  # a first-order method: error shrinks with the step size


def test_decoding_noise_gives_the_data_distribution():
    level = 999
    a = SCHEDULE.alpha_bar[level].float()
    gen = torch.Generator().manual_seed(0)
    x_top = a.sqrt() * MU + (a * SIGMA**2 + 1 - a).sqrt() * torch.randn(1, 1, 128, 128, generator=gen)
    samples = ddim_decode(x_top, gaussian_eps, SCHEDULE, timestep_ladder(level, 200))
    assert abs(samples.mean().item() - MU) < 0.02
    assert abs(samples.std().item() - SIGMA) < 0.02


def test_encode_then_decode_reconstructs():
    x0 = MU + SIGMA * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def round_trip_error(steps: int) -> float:
        ladder = timestep_ladder(50, steps)
        back = ddim_decode(ddim_encode(x0, gaussian_eps, SCHEDULE, ladder), gaussian_eps, SCHEDULE, ladder)
        return (back - x0).abs().max().item()

    errors = [round_trip_error(k) for k in (10, 25, 50)]
    assert errors[-1] < 0.015  # 3 % of the data's standard deviation
    assert errors[0] > errors[1] > errors[2]


def _toy_classifier(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Class 0 for dark images, class 1 for bright ones (logistic on the mean)."""
    m = x.mean(dim=(1, 2, 3))
    return torch.stack([-4 * m, 4 * m], dim=1)


def test_guidance_gradient_points_to_class_0():
    x = torch.full((3, 1, 4, 4), 0.5)
    t = torch.tensor([10, 10, 10])
    grad = log_prob_gradient(_toy_classifier, x, t, target=0)
    assert torch.all(grad < 0)  # darker -> more "normal"
    eps = guided_eps(gaussian_eps, _toy_classifier, SCHEDULE, scale=5.0)

    def p0(x):
        return torch.softmax(_toy_classifier(x, t), dim=1)[:, 0]

    ladder = timestep_ladder(50, 10)
    x_top = ddim_encode(x, gaussian_eps, SCHEDULE, ladder)
    plain = ddim_decode(x_top, gaussian_eps, SCHEDULE, ladder)
    guided = ddim_decode(x_top, eps, SCHEDULE, ladder)
    assert torch.all(p0(guided) > p0(plain))
    assert guided_eps(gaussian_eps, _toy_classifier, SCHEDULE, scale=0.0) is gaussian_eps


def test_x_space_guidance_is_the_scaled_gradient_and_heals_harder_than_the_eps_form():
    """The authors' form adds s·∇ log p(y=0) to x after each step: for the toy classifier the gradient is
    −8·σ(8m)/16 per pixel of a 4×4 image of mean m (by hand). At the same s and a small noise level it
    moves a bright sample toward class 0 further than the ε form, whose step shrinks with 1 − ᾱ_t."""
    x = torch.full((3, 1, 4, 4), 0.5)
    t = torch.tensor([10, 10, 10])
    shift = x_step(_toy_classifier, 5.0)(x, t)
    torch.testing.assert_close(shift, torch.full_like(x, 5.0 * -8 * torch.sigmoid(torch.tensor(4.0)).item() / 16))

    def p0(x):
        return torch.softmax(_toy_classifier(x, t), dim=1)[:, 0]

    ladder = timestep_ladder(50, 10)
    x_top = ddim_encode(x, gaussian_eps, SCHEDULE, ladder)
    plain = ddim_decode(x_top, gaussian_eps, SCHEDULE, ladder)
    eps_form = ddim_decode(x_top, guided_eps(gaussian_eps, _toy_classifier, SCHEDULE, 5.0), SCHEDULE, ladder)
    x_form = ddim_decode(x_top, gaussian_eps, SCHEDULE, ladder, guide=x_step(_toy_classifier, 5.0))
    assert torch.all(p0(x_form) > p0(eps_form)) and torch.all(p0(eps_form) > p0(plain))
    assert (plain - x_form).mean() > 5 * (plain - eps_form).mean() > 0


def test_one_step_estimates_average_to_the_posterior_mean():
    """For Gaussian data, E over the forward noise of the one-step x̂_0 is μ + k (x_0 − μ) with
    k = ᾱσ² / (ᾱσ² + 1 − ᾱ) (the posterior-mean shrinkage; by hand from the closed-form ε)."""
    from pseudohealthy.diffusion.noise import RowNoise

    x0 = MU + SIGMA * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    noise = RowNoise([0, 1, 2, 3])
    mean = torch.stack([one_step_x0(x0, gaussian_eps, SCHEDULE, 300, noise) for _ in range(400)]).mean(0)
    a = SCHEDULE.alpha_bar[300].item()
    k = a * SIGMA**2 / (a * SIGMA**2 + 1 - a)
    assert (mean - (MU + k * (x0 - MU))).abs().max() < 0.05


def test_reinsertion_keeps_healthy_pixels_and_redraws_the_outlier():
    """Stochastic decoding from L = 300 redraws everything; with re-insertion of the inversion's path where
    the prediction agrees with the input, pixels off a bright 4 × 4 patch (1.6 % of the image) stay at least
    three times closer to the input, while the patch is redrawn as much as without it."""
    from pseudohealthy.detect.synthesis import reinsertion
    from pseudohealthy.diffusion.noise import RowNoise

    x0 = MU + SIGMA * torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    patch = torch.zeros_like(x0, dtype=torch.bool)
    patch[:, :, 10:14, 10:14] = True
    x0[patch] = MU + 4 * SIGMA
    ladder = timestep_ladder(300, 10)
    path = ddim_encode_path(x0, gaussian_eps, SCHEDULE, ladder)
    assert torch.equal(path[-1], ddim_encode(x0, gaussian_eps, SCHEDULE, ladder))
    changes = {}
    for hook in (None, reinsertion(dict(zip(ladder, path)), x0)):
        out = ddim_decode(path[-1], gaussian_eps, SCHEDULE, ladder, 1.0, RowNoise([1, 2, 3, 4]), after_step=hook)
        changes[hook is not None] = ((out - x0).abs()[~patch].mean(), (out - x0).abs()[patch].mean())
    assert changes[True][0] < changes[False][0] / 3
    assert changes[True][1] > 0.9 * changes[False][1]
