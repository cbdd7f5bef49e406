"""Axial slices of the preprocessed volumes, cached as memory-mapped arrays with an index.

``WORK_DIR/slices/`` holds ``t1.npy``, ``flair.npy`` (float32, (N, H, W), range [-1, 1]),
``brain.npy``, ``lesion.npy`` (uint8, (N, H, W)) and ``index.tsv`` (one row per slice:
participant_id, role, group, z, label, lesion_pixels, brain_fraction). Slice labels follow
METHOD.md §1: a patient's slice that intersects the lesion gets the lobe class, every other slice 0.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy import workdir
from pseudohealthy.config.schema import DataConfig
from pseudohealthy.io.atomic import atomic_directory

ARRAYS = {"t1": np.float32, "flair": np.float32, "brain": np.uint8, "lesion": np.uint8}
INDEX_COLUMNS = ["participant_id", "role", "group", "z", "label", "lesion_pixels", "brain_fraction"]


@dataclass
class SliceCache:
    arrays: dict[str, np.ndarray]  # memory-mapped, read-only
    index: list[dict]

    def rows(self, role: str | None = None) -> np.ndarray:
        """Indices of slices whose subject has ``role`` (all when None)."""
        return np.array([i for i, r in enumerate(self.index) if role is None or r["role"] == role], dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.index], dtype=np.int64)


def _kept_slices(brain: np.ndarray, min_fraction: float) -> np.ndarray:
    fraction = brain.reshape(-1, brain.shape[2]).mean(axis=0)
    return np.flatnonzero(fraction >= min_fraction)


def build_slice_cache(work_dir: Path, metas: list[dict], roles: dict[str, str], cfg: DataConfig) -> SliceCache:
    """(Re)write ``work_dir/slices`` from the preprocessed subjects in ``metas``; atomic as a folder."""
    work_dir = Path(work_dir)
    plan = []
    for meta in sorted(metas, key=lambda m: m["participant_id"]):
        sdir = workdir.subject_dir(work_dir, meta["participant_id"])
        brain = np.asanyarray(nib.load(workdir.volume_file(sdir, "brain")).dataobj) > 0
        plan.append((meta, sdir, _kept_slices(brain, cfg.min_brain_fraction)))
    n = sum(len(k) for _, _, k in plan)
    size = cfg.image_size
    with atomic_directory(workdir.slices_dir(work_dir)) as staging:
        out = {name: np.lib.format.open_memmap(workdir.slice_array_file(staging, name), mode="w+", dtype=dt,
                                               shape=(n, size, size))
               for name, dt in ARRAYS.items()}
        index = []
        row = 0
        for meta, sdir, kept in plan:
            vols = {name: np.asanyarray(nib.load(workdir.volume_file(sdir, name)).dataobj) for name in ARRAYS}
            vols["lesion"] = (vols["lesion"] > 0.5).astype(np.uint8)
            for z in kept:
                for name in ARRAYS:
                    out[name][row] = vols[name][:, :, z]
                lesion_pixels = int(out["lesion"][row].sum())
                patient = meta["group"] == "fcd"
                index.append({
                    "participant_id": meta["participant_id"], "role": roles[meta["participant_id"]],
                    "group": meta["group"], "z": int(z),
                    "label": int(meta["label"]) if patient and lesion_pixels > 0 else 0,
                    "lesion_pixels": lesion_pixels, "brain_fraction": round(float(out["brain"][row].mean()), 4),
                })
                row += 1
        for arr in out.values():
            arr.flush()
        del out
        with open(workdir.slice_index_file(staging), "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(index)
    return open_slice_cache(work_dir)


def open_slice_cache(work_dir: Path) -> SliceCache:
    folder = workdir.slices_dir(work_dir)
    arrays = {name: np.load(workdir.slice_array_file(folder, name), mmap_mode="r") for name in ARRAYS}
    with open(workdir.slice_index_file(folder), newline="") as fh:
        index = []
        for r in csv.DictReader(fh, delimiter="\t"):
            for key in ("z", "label", "lesion_pixels"):
                r[key] = int(r[key])
            r["brain_fraction"] = float(r["brain_fraction"])
            index.append(r)
    return SliceCache(arrays, index)
