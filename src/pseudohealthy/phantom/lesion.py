"""FCD type II lesions and normal variants, drawn into tissue maps on the template grid.

A lesion changes the tissue maps inside a soft, irregular blob at the grey–white junction:
cortical thickening (WM near the cortex becomes GM), a blurred junction (local smoothing),
abnormal tissue with long T1/T2 (FLAIR-bright, T1-dark) in the subcortical WM and cortex, and
for type IIb a transmantle tail tapering toward the lateral ventricle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit
from scipy.spatial.transform import Rotation

from pseudohealthy.templates.lobes import HEMISPHERE_CODES, LOBE_CODES, LobeAtlas, load_lobe_atlas
from pseudohealthy.templates.mni import TissuePriors, load_tissue_priors


@dataclass
class TissueMaps:
    """Mutable per-subject tissue fractions on the template grid (sum to 1 inside the brain)."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    fcd: np.ndarray
    cap: np.ndarray
    lesion_mask: np.ndarray  # float32 0/1: what a radiologist would outline
    # Tissues of the realistic phantom, kept where they are: (tissue name, box, fraction over the box).
    patches: list[tuple[str, tuple[slice, ...], np.ndarray]] = field(default_factory=list)
    _guard: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_priors(cls, priors: TissuePriors) -> "TissueMaps":
        zeros = np.zeros_like(priors.gm)
        return cls(priors.gm.copy(), priors.wm.copy(), priors.csf.copy(), zeros.copy(), zeros.copy(), zeros.copy())

    def lesion_guard(self, box: tuple[slice, ...]) -> np.ndarray:
        """Over ``box``: 0 within ``LESION_GUARD_MM`` of the lesion, rising to 1 over 2 mm beyond. Normal
        variants act in proportion to it, so that none changes the lesion or the shell its contrast is
        measured against (2–4 native voxels around it). Computed once, at the first call after the lesion."""
        if self._guard is None:
            self._guard = _guard(self.lesion_mask > 0.5)
        return self._guard[box]

    def convert(self, box: tuple[slice, ...], amount: np.ndarray, target: str, sources: tuple[str, ...] = ("wm",)
                ) -> np.ndarray:
        """Turn the fraction ``amount`` (over ``box``, in [0, 1]; none near the lesion: :meth:`lesion_guard`) of
        each ``sources`` tissue into tissue ``target`` (a name in contrast.DERIVED_TISSUES or "cap"); returns
        the fraction converted."""
        amount = amount * self.lesion_guard(box)
        moved = np.zeros(self.gm[box].shape, np.float32)
        for name in sources:
            part = (amount * getattr(self, name)[box]).astype(np.float32)
            getattr(self, name)[box] -= part
            moved += part
        self.patches.append((target, box, moved))
        return moved


# Normal variants stay this far from the lesion (mm): beyond its contrast shell (4 native voxels of up to 1.3 mm,
# from a native mask that may reach half a voxel past the template's).
LESION_GUARD_MM = 7.0


def _guard(lesion: np.ndarray) -> np.ndarray:
    """1 far from ``lesion`` (bool, template grid), 0 within LESION_GUARD_MM, linear over the 2 mm between."""
    guard = np.ones(lesion.shape, np.float32)
    if not lesion.any():
        return guard
    margin = int(LESION_GUARD_MM) + 4
    idx = np.argwhere(lesion)
    box = tuple(slice(max(int(lo) - margin, 0), int(hi) + margin + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
    distance = ndi.distance_transform_edt(~lesion[box])
    guard[box] = np.clip((distance - LESION_GUARD_MM) / 2.0, 0.0, 1.0)
    return guard


@dataclass(frozen=True)
class LesionSpec:
    lobes: tuple[str, ...]  # one lobe, or two for lesions across a lobe boundary ("TL,OL")
    hemisphere: str  # "L" / "R"
    radius_mm: float
    contrast: float  # 0..1: fraction of tissue replaced by dysplastic tissue at the core (legacy lesion)
    transmantle: bool  # FCD IIb
    # Realistic lesion (phantom/fcd_range.py): intended volume and FLAIR contrast ratio; None: legacy lesion.
    volume_cm3: float | None = None
    flair_ratio: float | None = None


@dataclass
class LesionTruth:
    center_vox: list[int]
    center_template_mm: list[float]
    radii_mm: list[float]
    volume_template_mm3: float
    lobe_fractions: dict[str, float] = field(default_factory=dict)
    hemisphere_fraction: float = 0.0


@cache
def junction_and_depth() -> tuple[np.ndarray, np.ndarray]:
    """Candidate centres (GM next to WM) and their depth below the brain surface (mm)."""
    p = load_tissue_priors()
    junction = (p.gm > 0.45) & ndi.maximum_filter(p.wm > 0.5, size=5)
    depth = ndi.distance_transform_edt(p.brain).astype(np.float32)
    return junction, depth


@cache
def _distance_to_lobe(code: int, hemi: int) -> np.ndarray:
    atlas = load_lobe_atlas()
    region = (atlas.lobe == code) & (atlas.hemisphere == hemi)
    return ndi.distance_transform_edt(~region).astype(np.float32)


def center_candidates(spec: LesionSpec, atlas: LobeAtlas, relax: float) -> np.ndarray:
    """Junction voxels where a lesion of this spec fits its lobe(s); ``relax`` >= 1 loosens the fit."""
    junction, _ = junction_and_depth()
    hemi = HEMISPHERE_CODES[spec.hemisphere]
    first = LOBE_CODES[spec.lobes[0]]
    ok = junction & (atlas.lobe == first) & (atlas.hemisphere == hemi)
    if len(spec.lobes) == 1:
        # Keep the whole blob in its lobe: far from every other lobe of this hemisphere.
        for other in set(LOBE_CODES.values()) - {first}:
            ok &= _distance_to_lobe(other, hemi) > 1.35 * spec.radius_mm / relax
    else:  # straddle the boundary with the second lobe
        ok &= _distance_to_lobe(LOBE_CODES[spec.lobes[1]], hemi) < max(2.0, 0.3 * spec.radius_mm) * relax
    candidates = np.argwhere(ok)
    x_mm = atlas.affine[0, :3] @ candidates.T + atlas.affine[0, 3]
    return candidates[np.abs(x_mm) > 8]  # off the midline


def pick_center(rng: np.random.Generator, spec: LesionSpec, atlas: LobeAtlas) -> np.ndarray:
    for relax in (1.0, 1.5, 2.5, 4.0):
        candidates = center_candidates(spec, atlas, relax)
        if len(candidates):
            break
    else:
        raise RuntimeError(f"no place for a {spec.radius_mm:.1f} mm lesion in {','.join(spec.lobes)} {spec.hemisphere}")
    # Prefer the bottom of sulci: cortex deeper below the brain surface.
    d = junction_and_depth()[1][tuple(candidates.T)]
    weight = np.exp(-0.5 * ((d - 14.0) / 6.0) ** 2) + 1e-3
    return candidates[rng.choice(len(candidates), p=weight / weight.sum())]


def _crop(center: np.ndarray, half: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(0, int(c) - half), min(s, int(c) + half + 1)) for c, s in zip(center, shape))


def box_coords(center: np.ndarray, half: int, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], np.ndarray]:
    """The crop around ``center`` and each of its voxels' offset from the centre, (3, *box) float32."""
    box = _crop(center, half, shape)
    grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")).astype(np.float32)
    return box, grid - center[:, None, None, None].astype(np.float32)


def transmantle_target(center: np.ndarray, hemisphere: str, atlas: LobeAtlas) -> np.ndarray:
    """The nearest lateral-ventricle voxel of the lesion's hemisphere: where the transmantle tail ends."""
    vent = np.argwhere(atlas.lateral_ventricles & (atlas.hemisphere == HEMISPHERE_CODES[hemisphere]))
    return vent[np.argmin(((vent - center) ** 2).sum(axis=1))]


def soft_blob(rel: np.ndarray, radii: np.ndarray, rot: np.ndarray, wobble: np.ndarray) -> np.ndarray:
    """Soft irregular ellipsoid: axes ``radii`` (mm) along ``rot``, its radius modulated by ``wobble``."""
    local = np.einsum("ij,j...->i...", rot.T, rel)
    rho = np.sqrt(sum((local[k] / radii[k]) ** 2 for k in range(3)))
    return expit((1.0 - rho * (1.0 + 0.25 * wobble)) / 0.12).astype(np.float32)


def wobble_field(noise: np.ndarray) -> np.ndarray:
    wobble = ndi.gaussian_filter(noise.astype(np.float32), 2.0)
    return wobble / max(float(np.abs(wobble).max()), 1e-6)


def thicken_and_blur(gm: np.ndarray, wm: np.ndarray, blob: np.ndarray, thickening: float = 0.6
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Cortical thickening (this fraction of the WM within 4 mm of the cortex turns into GM-like tissue) and
    a blurred grey–white junction, inside ``blob``."""
    near_cortex = ndi.distance_transform_edt(gm < 0.5) < 4.0
    thick = thickening * blob * wm * near_cortex
    gm, wm = gm + thick, wm - thick
    gm = (1 - blob) * gm + blob * ndi.gaussian_filter(gm, 1.5)
    wm = (1 - blob) * wm + blob * ndi.gaussian_filter(wm, 1.5)
    return gm, wm


def transmantle_tube(rel: np.ndarray, seg: np.ndarray, radius_mm: float) -> np.ndarray:
    """Transmantle sign: a tail from the lesion along ``seg`` (to the ventricle), tapering to ~1 mm."""
    length = float(np.linalg.norm(seg))
    u = np.clip(np.einsum("i,i...->...", seg, rel) / max(length**2, 1e-6), 0, 1)
    dist = np.linalg.norm(rel - u[None] * seg[:, None, None, None], axis=0)
    radius = 0.5 * radius_mm * (1 - u) + 1.0 * u
    return expit((radius - dist) / 0.6) * (u > 0) * (u < 1)


def lesion_truth(mask: np.ndarray, box: tuple[slice, ...], center: np.ndarray, radii: np.ndarray,
                 hemisphere: str) -> LesionTruth:
    """Where and how large a lesion is, from its template-grid ``mask`` over ``box``."""
    atlas = load_lobe_atlas()
    lobe_codes = atlas.lobe[box][mask]
    hemi_codes = atlas.hemisphere[box][mask]
    n = max(int(mask.sum()), 1)
    fractions = {name: float((lobe_codes == code).sum() / n) for name, code in LOBE_CODES.items()}
    center_mm = (atlas.affine @ np.r_[center, 1.0])[:3]
    return LesionTruth(
        center_vox=[int(c) for c in center],
        center_template_mm=[round(float(c), 2) for c in center_mm],
        radii_mm=[round(float(r), 2) for r in radii],
        volume_template_mm3=float(mask.sum()),  # 1 mm voxels
        lobe_fractions={k: round(v, 3) for k, v in fractions.items() if v > 0},
        hemisphere_fraction=round(float((hemi_codes == HEMISPHERE_CODES[hemisphere]).sum() / n), 3),
    )


def add_lesion(maps: TissueMaps, spec: LesionSpec, rng: np.random.Generator) -> LesionTruth:
    """Draw one FCD lesion into ``maps`` (in place) and return where and how large it is."""
    atlas = load_lobe_atlas()
    center = pick_center(rng, spec, atlas)
    half = int(np.ceil(2.0 * spec.radius_mm)) + 6
    target = None
    if spec.transmantle:
        target = transmantle_target(center, spec.hemisphere, atlas)
        half = max(half, int(np.abs(target - center).max()) + 4)
    box, rel = box_coords(center, half, maps.gm.shape)

    # Irregular ellipsoid: random axes and orientation, radius modulated by smooth noise.
    radii = spec.radius_mm * rng.uniform(0.75, 1.3, 3)
    rot = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix().astype(np.float32)
    blob = soft_blob(rel, radii, rot, wobble_field(rng.standard_normal(rel.shape[1:]).astype(np.float32)))

    gm, wm = maps.gm[box], maps.wm[box]
    wm0 = wm.copy()
    gm, wm = thicken_and_blur(gm, wm, blob)
    # Dysplastic tissue: mostly in subcortical WM, partly in cortex.
    fcd_from_wm = spec.contrast * blob * wm
    fcd_from_gm = 0.5 * spec.contrast * blob * gm
    fcd = fcd_from_wm + fcd_from_gm
    wm, gm = wm - fcd_from_wm, gm - fcd_from_gm
    mask = (blob > 0.5) & ((maps.gm[box] + maps.wm[box]) > 0.5)

    if target is not None:
        tube = transmantle_tube(rel, (target - center).astype(np.float32), spec.radius_mm)
        tail = 0.8 * spec.contrast * tube * wm
        fcd, wm = fcd + tail, wm - tail
        mask |= (tube > 0.5) & (wm0 > 0.3)

    maps.gm[box], maps.wm[box], maps.fcd[box] = gm, wm, fcd
    maps.lesion_mask[box] = np.maximum(maps.lesion_mask[box], mask.astype(np.float32))
    return lesion_truth(mask, box, center, radii, spec.hemisphere)


@cache
def _frontal_horn_proximity() -> np.ndarray:
    """Soft weight, 1 at the tips of the frontal horns, falling off over ~5 mm."""
    vent = load_lobe_atlas().lateral_ventricles
    ys = np.argwhere(vent)[:, 1]
    tips = vent.copy()
    tips[:, : int(np.percentile(ys, 92)), :] = False  # the most anterior part of each frontal horn
    dist = ndi.distance_transform_edt(~tips)
    return np.exp(-0.5 * (dist / 2.5) ** 2).astype(np.float32)


def add_periventricular_caps(maps: TissueMaps, rng: np.random.Generator) -> float:
    """FLAIR-bright caps at the frontal horns (a normal variant, not a lesion). Returns their strength."""
    strength = float(rng.uniform(0.3, 0.6))
    cap = strength * _frontal_horn_proximity() * maps.wm
    maps.cap += cap
    maps.wm -= cap
    return strength
