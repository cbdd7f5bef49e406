"""Synthetic anomalies for the image-conditioned DDPM baseline (Baugh et al. 2024): the model sees a
healthy slice with an anomaly pasted in as its conditioning image and learns to denoise toward the
clean slice, so at test time it removes what does not belong instead of copying it.

Baugh et al. blend in patches of other images; here an anomaly is a smooth-edged disc of raised or
lowered intensity, which is enough to teach removal and keeps the corruption independent of the data.
"""

from __future__ import annotations

import torch


def anomaly_fields(generator: torch.Generator, n: int, size: int, probability: float = 0.5) -> torch.Tensor:
    """Additive fields (n, 1, size, size): with ``probability`` one disc per slice, centre in the middle
    60 % of the slice, radius 2 px to size / 8, amplitude ±0.3–1.0 (the network range is [-1, 1]);
    otherwise zero. Drawn on the CPU from ``generator``."""
    u = torch.rand((n, 6), generator=generator)
    present = (u[:, 0] < probability).float()
    cy, cx = (0.2 + 0.6 * u[:, 1]) * size, (0.2 + 0.6 * u[:, 2]) * size
    radius = 2 + u[:, 3] * max(size / 8 - 2, 0)
    amplitude = (0.3 + 0.7 * u[:, 4]) * torch.where(u[:, 5] < 0.5, -1.0, 1.0) * present
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    distance = ((ys[None] - cy[:, None, None]) ** 2 + (xs[None] - cx[:, None, None]) ** 2).sqrt()
    disc = torch.sigmoid(radius[:, None, None] - distance)  # ≈ 1 inside, a 1-2 px soft edge
    return (amplitude[:, None, None] * disc).unsqueeze(1)


def add_anomalies(flair: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """Paste ``fields`` into the brain only (background stays at the network's -1)."""
    inside = (flair > -0.999).to(flair.dtype)
    return flair + fields.to(flair.device, flair.dtype) * inside
