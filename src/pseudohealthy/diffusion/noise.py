"""Random draws of inference that do not depend on how slices are batched.

Every row of an inference batch (one slice of one subject, one of N samples) owns a CPU generator
seeded from (config seed, subject id, slice index, sample index). A row's noise is therefore the same
whether the slice is processed alone, in a batch of 7 or of 64, first or after other subjects, and on
any device (the draws are made on the CPU and moved).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

# noise_fn(shape, generator) -> unit-variance noise drawn on the CPU (Gaussian, or simplex for AnoDDPM).
NoiseFn = Callable[[tuple[int, ...], torch.Generator | None], torch.Tensor]


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def row_seed(seed: int, subject: str, slice_index: int, sample: int) -> int:
    """A 63-bit seed for one (subject, slice, sample) row; a hash, so nearby ids give unrelated streams."""
    key = f"{seed}\x1f{subject}\x1f{int(slice_index)}\x1f{int(sample)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & (2 ** 63 - 1)


class RowNoise:
    """Noise for a batch whose row i always comes from generator i (``seeds[i]``).

    Calling it with a shape ``(B, ...)`` (B = number of seeds) draws ``(1, ...)`` from each row's
    generator in turn and stacks them; the generators advance, so successive calls give fresh noise.
    """

    def __init__(self, seeds: Sequence[int], noise_fn: NoiseFn = gaussian_noise):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.noise_fn = noise_fn

    def __len__(self) -> int:
        return len(self.generators)

    def __call__(self, shape: tuple[int, ...]) -> torch.Tensor:
        if shape[0] != len(self.generators):
            raise ValueError(f"noise for {shape[0]} rows asked of a RowNoise with {len(self.generators)} rows")
        return torch.cat([self.noise_fn((1, *shape[1:]), g) for g in self.generators])
