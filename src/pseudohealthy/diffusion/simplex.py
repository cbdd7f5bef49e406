"""Multi-octave 2D simplex noise, the structured noise of AnoDDPM (Wyatt et al. 2022).

Gaussian noise corrupts pixels independently, so a diffusion model trained on it can repair a lesion
only at high noise levels; simplex noise is spatially smooth at several scales, so partial noising
hides whole blobs of tissue, lesions included. Here each octave is classic 2D simplex noise (Perlin
2001, in Gustavson's formulation) with a random gradient table and a random offset per image, and
each image is standardised to zero mean and unit variance so that it can stand in for ε ~ N(0, I)
in q(x_t | x_0) and in the sampler.
"""

from __future__ import annotations

import math

import torch

_F2 = 0.5 * (math.sqrt(3.0) - 1.0)  # skews the square grid onto the simplex (triangle) grid
_G2 = (3.0 - math.sqrt(3.0)) / 6.0  # and back
_GRADIENTS = torch.tensor([[math.cos(a), math.sin(a)] for a in [k * math.pi / 8 for k in range(16)]])


def _simplex(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Simplex noise (bounded, |n| < 1) at points (x, y) (any equal shapes); ``perm``: a permutation of 0..255."""
    s = (x + y) * _F2
    i, j = torch.floor(x + s), torch.floor(y + s)
    t = (i + j) * _G2
    x0, y0 = x - (i - t), y - (j - t)  # offset from the cell's first corner
    i1 = (x0 > y0).long()  # which of the cell's two triangles: second corner at (1, 0) or (0, 1)
    j1 = 1 - i1
    ii, jj = i.long() & 255, j.long() & 255
    corners = ((0, 0, x0, y0),
               (i1, j1, x0 - i1 + _G2, y0 - j1 + _G2),
               (1, 1, x0 - 1.0 + 2 * _G2, y0 - 1.0 + 2 * _G2))
    gradients = _GRADIENTS.to(x.dtype)
    total = torch.zeros_like(x)
    for di, dj, dx, dy in corners:
        g = gradients[perm[(ii + di + perm[(jj + dj) & 255]) & 255] & 15]
        falloff = (0.5 - dx * dx - dy * dy).clamp(min=0)
        total = total + falloff ** 4 * (g[..., 0] * dx + g[..., 1] * dy)
    return 70.0 * total


def simplex_noise(shape: tuple[int, ...], generator: torch.Generator | None = None, octaves: int = 6,
                  persistence: float = 0.8, period: float | None = None) -> torch.Tensor:
    """Noise of ``shape`` (..., H, W): a sum of ``octaves`` simplex layers, the first with features of
    about ``period`` pixels (default W / 4), each next one at half the period and ``persistence``
    times the amplitude; every image standardised to mean 0, variance 1. Drawn on the CPU."""
    *lead, h, w = shape
    n = math.prod(lead) if lead else 1
    period = period or w / 4
    perm = torch.randperm(256, generator=generator)
    offsets = torch.rand((n, octaves, 2), generator=generator) * 1024.0
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = torch.zeros((n, h, w))
    for octave in range(octaves):
        frequency = 2.0 ** octave / period
        x = xs[None] * frequency + offsets[:, octave, 0, None, None]
        y = ys[None] * frequency + offsets[:, octave, 1, None, None]
        out += persistence ** octave * _simplex(x, y, perm)
    out -= out.mean(dim=(1, 2), keepdim=True)
    out /= out.std(dim=(1, 2), keepdim=True).clamp(min=1e-12)
    return out.reshape(shape)
