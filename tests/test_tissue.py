"""Scoring the brain without its CSF (``method.exclude_csf``) on hand-made volumes whose tissues are known."""

from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.anomaly.tissue import csf_mask, tissue_means
from pseudohealthy.config import load_config
from pseudohealthy.detect.pipeline import SubjectVolumes, maps_from_synthesis
from pseudohealthy.detect.synthesis import Synthesis

SHAPE = (24, 24, 6)


def _tissues(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A brain of three slabs along x: CSF (T1 -0.5), grey matter (0.2), white matter (0.8), with noise of
    SD 0.05; returns (t1, brain, truth of CSF). A border of non-brain voxels at -1 surrounds it."""
    rng = np.random.default_rng(seed)
    brain = np.zeros(SHAPE, bool)
    brain[2:-2, 2:-2, :] = True
    tissue = np.full(SHAPE, 0.8)
    tissue[:8] = -0.5
    tissue[8:14] = 0.2
    t1 = np.where(brain, tissue + rng.normal(0, 0.05, SHAPE), -1.0).astype(np.float32)
    return t1, brain, brain & (tissue == -0.5)


def test_tissue_means_and_the_csf_mask_of_a_three_tissue_volume():
    t1, brain, csf = _tissues()
    assert tissue_means(t1, brain) == pytest.approx([-0.5, 0.2, 0.8], abs=0.01)
    # the midpoint between CSF and grey matter (-0.15) is 7 noise SDs from both: every voxel on its side
    assert np.array_equal(csf_mask(t1, brain), csf)
    # the class order, not the scale, decides: the same volume shifted and stretched gives the same mask
    assert np.array_equal(csf_mask(3.0 * t1 + 10.0, brain), csf)
    # a voxel half CSF, half grey matter (partial volume at a sulcus) is scored while it is at least half tissue
    mixed = t1.copy()
    mixed[10, 10, 0], mixed[10, 11, 0] = 0.5 * (-0.5) + 0.5 * 0.2 + 0.01, 0.7 * (-0.5) + 0.3 * 0.2
    mask = csf_mask(mixed, brain)
    assert not mask[10, 10, 0] and mask[10, 11, 0]


def test_excluding_csf_removes_a_residual_in_the_csf_and_keeps_one_in_the_cortex():
    t1, brain, csf = _tissues()
    flair = np.where(brain, 0.0, -1.0).astype(np.float32)
    flair[4, 12, 3] += 2.0  # a bright spot in the CSF (inflow)
    flair[11, 12, 3] += 2.0  # a bright spot in the grey matter (a lesion)
    volumes = SubjectVolumes("sub-01", flair, t1, brain, np.zeros(SHAPE, bool))
    healthy = Synthesis(np.where(brain, 0.0, -1.0).astype(np.float32)[None], np.zeros((SHAPE[2], 1), np.float32),
                        np.arange(SHAPE[2]))
    settings = {"method": {"histogram_matching": "none", "normative": False, "smoothing_mm": 0.0,
                           "slice_standardise": False}}
    plain = maps_from_synthesis(volumes, healthy, None, load_config("quick", overrides=settings))
    settings["method"]["exclude_csf"] = True
    masked = maps_from_synthesis(volumes, healthy, None, load_config("quick", overrides=settings))
    assert plain.anomaly[4, 12, 3] == pytest.approx(2.0) and plain.anomaly[11, 12, 3] == pytest.approx(2.0)
    assert masked.anomaly[4, 12, 3] == 0 and masked.anomaly[11, 12, 3] == pytest.approx(2.0)
    assert np.array_equal(masked.scored, brain & ~csf) and np.array_equal(masked.brain, plain.brain)
    assert np.array_equal(plain.scored, brain)
    assert not masked.anomaly[csf].any() and not masked.sample_maps[0][csf].any()
