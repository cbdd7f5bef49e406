"""Threshold, connected components, and a ranked cluster table in the subject's space."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.templates.lobes import LOBE_NAMES

HEMISPHERE_NAMES = {1: "L", 2: "R"}


@dataclass
class Cluster:
    rank: int
    peak_score: float
    mean_score: float
    volume_mm3: float
    centroid_mm: list[float]
    peak_mm: list[float]
    hemisphere: str
    lobe: str

    def row(self) -> dict:
        return asdict(self)


def count_clusters(score: np.ndarray, threshold: float, min_voxels: float) -> int:
    """Number of 26-connected clusters of ``score > threshold`` with at least ``min_voxels`` voxels."""
    labels, n = ndi.label(score > threshold, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return 0
    return int((np.bincount(labels.ravel())[1:] >= min_voxels).sum())


def find_clusters(score: np.ndarray, affine: np.ndarray, threshold: float, min_volume_mm3: float,
                  lobe: np.ndarray | None = None, hemisphere: np.ndarray | None = None,
                  rank_by: str = "peak") -> tuple[list[Cluster], np.ndarray]:
    """Clusters of ``score > threshold`` (26-connected) of at least ``min_volume_mm3``, ranked by their
    peak (or mean) score. Returns the clusters and a label volume (rank 1 = most suspicious, 0 = none)."""
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    labels, n = ndi.label(score > threshold, structure=np.ones((3, 3, 3), bool))
    found = []
    for idx in range(1, n + 1):
        vox = np.argwhere(labels == idx)
        volume = len(vox) * voxel_mm3
        if volume < min_volume_mm3:
            continue
        values = score[tuple(vox.T)]
        peak = vox[int(np.argmax(values))]
        lobe_name = hemi_name = "n/a"
        if lobe is not None:
            codes = lobe[tuple(vox.T)].astype(int)
            codes = codes[codes > 0]
            if len(codes):
                lobe_name = LOBE_NAMES.get(int(np.bincount(codes).argmax()), "n/a")
        if hemisphere is not None:
            codes = hemisphere[tuple(vox.T)].astype(int)
            codes = codes[codes > 0]
            if len(codes):
                hemi_name = HEMISPHERE_NAMES.get(int(np.bincount(codes).argmax()), "n/a")
        found.append((idx, Cluster(0, float(values.max()), float(values.mean()), round(volume, 1),
                                   _mm(affine, vox.mean(axis=0)), _mm(affine, peak), hemi_name, lobe_name)))
    key = (lambda c: c[1].peak_score) if rank_by == "peak" else (lambda c: c[1].mean_score)
    found.sort(key=key, reverse=True)
    ranked = np.zeros(score.shape, np.uint16)
    clusters = []
    for rank, (idx, cluster) in enumerate(found, start=1):
        cluster.rank = rank
        ranked[labels == idx] = rank
        clusters.append(cluster)
    return clusters, ranked


def _mm(affine: np.ndarray, ijk: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in affine[:3, :3] @ ijk + affine[:3, 3]]
