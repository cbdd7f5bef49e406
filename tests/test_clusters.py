"""Clusters above the threshold and candidates below it, on hand-built score volumes."""

from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.anomaly.clusters import find_candidates, find_clusters, relative_peak


def _box(score: np.ndarray, corner: tuple[int, int, int], size: int, value: float) -> None:
    x, y, z = corner
    score[x:x + size, y:y + size, z:z + size] = value


def test_candidates_are_the_strongest_regions_under_the_threshold_apart_from_clusters():
    score = np.zeros((40, 40, 40), np.float32)
    _box(score, (2, 2, 2), 6, 0.40)  # halo around a cluster: touches it, so it is the cluster's, not a candidate
    _box(score, (4, 4, 4), 2, 0.70)  # the one cluster above 0.5
    _box(score, (20, 20, 20), 3, 0.45)  # candidate: under 0.5, over the floor
    _box(score, (30, 5, 5), 3, 0.36)  # weaker candidate
    _box(score, (5, 30, 30), 3, 0.30)  # under the floor: not listed
    _box(score, (30, 30, 30), 1, 0.48)  # over the floor but smaller than the minimum volume
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm³ voxels
    clusters, labels = find_clusters(score, affine, 0.5, min_volume_mm3=20.0)
    assert [c.peak_score for c in clusters] == [pytest.approx(0.70)]
    candidates, candidate_labels = find_candidates(score, affine, 1 / 3, 20.0, labels, limit=5)
    assert [c.rank for c in candidates] == [2, 3]  # ranks continue after the clusters'
    assert [round(c.peak_score, 2) for c in candidates] == [0.45, 0.36]
    assert not any(c.above_threshold for c in candidates) and clusters[0].above_threshold
    assert candidates[0].volume_mm3 == 27 * 8 and candidates[0].centroid_mm == [42.0, 42.0, 42.0]
    assert (candidate_labels == 2).sum() == 27 and not (candidate_labels.astype(bool) & labels.astype(bool)).any()
    assert relative_peak(candidates[0]) == pytest.approx(0.45 / 0.55, abs=1e-6)  # s/t from p = s/(s+t)
    assert relative_peak(clusters[0]) > 1
    only_one, _ = find_candidates(score, affine, 1 / 3, 20.0, labels, limit=1)
    assert [c.rank for c in only_one] == [2]
    none, empty = find_candidates(score, affine, 1 / 3, 20.0, labels, limit=0)
    assert none == [] and not empty.any()
