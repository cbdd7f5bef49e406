"""Threshold, connected components, and a ranked cluster table in the subject's space."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.templates.lobes import LOBE_NAMES

HEMISPHERE_NAMES = {1: "L", 2: "R"}


@dataclass(frozen=True)
class ClusterSettings:
    """What turns an anomaly map into ranked clusters: the threshold on the anomaly score, the smallest cluster
    reported and the ranking. ``calibrate`` records them in calibration.json (from ``method``) and every reader
    of a calibrated model, ``detect``'s derivatives and the template-grid scores alike, takes them from there."""

    threshold: float
    min_cluster_mm3: float
    rank_by: str = "peak"  # "peak" or "mean" score

    @classmethod
    def of(cls, calibration: dict) -> "ClusterSettings":
        """The settings a calibration (calibration.json, or one chosen just now) was made with."""
        return cls(calibration["threshold"], calibration["min_cluster_mm3"], calibration["rank_by"])


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
    confidence: float | None = None  # fraction of the N single-sample maps that agree (None: N = 1)
    peak_mni: list[float] | None = None  # the peak in MNI152 coordinates (None: not known)
    above_threshold: bool = True  # False: a candidate, one of the strongest regions under the threshold

    def row(self) -> dict:
        return asdict(self)


def relative_peak(cluster: Cluster) -> float:
    """A region's peak anomaly score over the threshold, from its probseg peak p = s / (s + t)
    (``anomaly.maps.score_to_unit``): s / t = p / (1 - p)."""
    return cluster.peak_score / max(1.0 - cluster.peak_score, 1e-12)


def count_clusters(score: np.ndarray, threshold: float, min_voxels: float) -> int:
    """Number of 26-connected clusters of ``score > threshold`` with at least ``min_voxels`` voxels."""
    labels, n = ndi.label(score > threshold, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return 0
    return int((np.bincount(labels.ravel())[1:] >= min_voxels).sum())


def _components(score: np.ndarray, affine: np.ndarray, level: float, min_volume_mm3: float,
                lobe: np.ndarray | None, hemisphere: np.ndarray | None) -> tuple[list[tuple[int, Cluster]], np.ndarray]:
    """26-connected components of ``score > level`` of at least ``min_volume_mm3`` as unranked clusters,
    with the component label volume they index."""
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    labels, n = ndi.label(score > level, structure=np.ones((3, 3, 3), bool))
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
    return found, labels


def _ranked(found: list[tuple[int, Cluster]], labels: np.ndarray, rank_by: str, first_rank: int = 1,
            limit: int | None = None) -> tuple[list[Cluster], np.ndarray]:
    key = (lambda c: c[1].peak_score) if rank_by == "peak" else (lambda c: c[1].mean_score)
    found = sorted(found, key=key, reverse=True)[:limit]
    ranked = np.zeros(labels.shape, np.uint16)
    clusters = []
    for rank, (idx, cluster) in enumerate(found, start=first_rank):
        cluster.rank = rank
        ranked[labels == idx] = rank
        clusters.append(cluster)
    return clusters, ranked


def find_clusters(score: np.ndarray, affine: np.ndarray, threshold: float, min_volume_mm3: float,
                  lobe: np.ndarray | None = None, hemisphere: np.ndarray | None = None,
                  rank_by: str = "peak") -> tuple[list[Cluster], np.ndarray]:
    """Clusters of ``score > threshold`` (26-connected) of at least ``min_volume_mm3``, ranked by their
    peak (or mean) score. Returns the clusters and a label volume (rank 1 = most suspicious, 0 = none)."""
    found, labels = _components(score, affine, threshold, min_volume_mm3, lobe, hemisphere)
    return _ranked(found, labels, rank_by)


def find_candidates(score: np.ndarray, affine: np.ndarray, floor: float, min_volume_mm3: float,
                    clusters: np.ndarray, limit: int, lobe: np.ndarray | None = None,
                    hemisphere: np.ndarray | None = None,
                    rank_by: str = "peak") -> tuple[list[Cluster], np.ndarray]:
    """The strongest regions that are not clusters: components of ``score > floor`` that hold no voxel of
    a cluster (``clusters``: their label volume), ranked after those clusters (ranks continue from the
    largest cluster rank), at most ``limit``. Such a region stays under the threshold, or exceeds it over
    less than the minimum cluster volume. Marked ``above_threshold = False``."""
    found, labels = _components(score, affine, floor, min_volume_mm3, lobe, hemisphere)
    touched = set(np.unique(labels[clusters > 0]).tolist())
    found = [(idx, c) for idx, c in found if idx not in touched]
    for _, cluster in found:
        cluster.above_threshold = False
    return _ranked(found, labels, rank_by, first_rank=int(clusters.max(initial=0)) + 1, limit=limit)


def _mm(affine: np.ndarray, ijk: np.ndarray) -> list[float]:
    return [round(float(v), 1) for v in affine[:3, :3] @ ijk + affine[:3, 3]]


def peak_regions(ranked: np.ndarray, clusters: list[Cluster], affine: np.ndarray,
                 radius_mm: float) -> list[np.ndarray]:
    """Per cluster, the flat indices of its voxels within ``radius_mm`` of its peak (the peak at least)."""
    inverse = np.linalg.inv(affine)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    regions = []
    for cluster in clusters:
        vox = np.argwhere(ranked == cluster.rank)
        peak = inverse[:3, :3] @ np.asarray(cluster.peak_mm) + inverse[:3, 3]
        distance = np.sqrt((((vox - peak) * spacing) ** 2).sum(axis=1))
        near = vox[distance <= max(radius_mm, float(distance.min()))]
        regions.append(np.ravel_multi_index(tuple(near.T), ranked.shape))
    return regions


class ClusterAgreement:
    """Cluster confidence and voxel-wise spread from N single-sample maps, fed one map at a time.

    Confidence of a cluster = the fraction of the N single-sample maps whose maximum over the
    cluster's peak region (its voxels within a radius of its peak) exceeds the threshold: "in how many
    of N independent pseudo-healthy redraws would this region have been reported?". Spread = the
    voxel-wise standard deviation of the N maps (population, ddof 0). Maps are added one by one so
    that N native-space volumes never have to be held at once.
    """

    def __init__(self, regions: list[np.ndarray], threshold: float):
        self.regions, self.threshold = regions, threshold
        self.hits = np.zeros(len(regions), int)
        self.n = 0
        self._sum = self._sum_sq = None

    def add(self, sample_map: np.ndarray) -> None:
        flat = sample_map.reshape(-1).astype(np.float64)
        for i, region in enumerate(self.regions):
            self.hits[i] += bool(flat[region].max() > self.threshold)
        self._sum = flat.copy() if self._sum is None else self._sum + flat
        self._sum_sq = flat ** 2 if self._sum_sq is None else self._sum_sq + flat ** 2
        self.n += 1

    def confidence(self) -> list[float]:
        return [float(h) / self.n for h in self.hits] if self.n else []

    def spread(self, shape: tuple[int, ...]) -> np.ndarray:
        mean = self._sum / self.n
        return np.sqrt(np.clip(self._sum_sq / self.n - mean ** 2, 0, None)).reshape(shape).astype(np.float32)
