"""Linear β schedule and forward noising.

Timestep convention: t = 0 is the clean image (ᾱ_0 = 1); t = 1 … T are the noised levels with
ᾱ_t = ∏_{s=1..t} (1 − β_s). Networks are trained on t ∈ [1, T].
"""

from __future__ import annotations

import torch


class NoiseSchedule:
    def __init__(self, timesteps: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0155):
        self.timesteps = timesteps
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        self.alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar])  # index t = 0 … T

    @classmethod
    def from_config(cls, cfg) -> "NoiseSchedule":
        return cls(cfg.timesteps, cfg.beta_start, cfg.beta_end)

    def alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ_t as float32, shaped (B, 1, 1, 1) for broadcasting over (B, C, H, W)."""
        return self.alpha_bar.to(t.device)[t].float().view(-1, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε."""
        a = self.alpha_bar_at(t)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
