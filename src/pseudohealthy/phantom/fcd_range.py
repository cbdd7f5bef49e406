"""The range of FCD type II that readers face: planned sizes and FLAIR contrasts, and lesions drawn to them.

Many FCD II, IIa above all, change FLAIR only a little and show mainly as cortical thickening and a
blurred grey–white junction; IIb add balloon cells, more FLAIR signal and often the transmantle sign
(Colombo et al., AJNR 2003; AJNR 2012;33:1932). The plan gives each lesion an intended volume and an intended
FLAIR contrast: the ratio of the lesion to a shell around it, as the benchmark measures it
(``metrics.lesion_contrast``). Every test split gets at least one lesion in each size and each
contrast stratum of the benchmark. Drawing a lesion then scales its shape to the volume and sets the
amount of FLAIR-bright dysplastic tissue so that the contrast, computed on the template grid without
confounds, is the intended one; where the surroundings alone already exceed it (sulcal CSF in the shell
lowers the shell's mean), the lesion moves to another place of its lobe.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from pseudohealthy.metrics import lesion_contrast
from pseudohealthy.phantom.contrast import FLAIR, TISSUES, realistic_tissues, tissue_signals
from pseudohealthy.phantom.lesion import (
    LesionSpec,
    LesionTruth,
    TissueMaps,
    box_coords,
    center_candidates,
    junction_and_depth,
    lesion_truth,
    pick_center,
    soft_blob,
    thicken_and_blur,
    transmantle_target,
    transmantle_tube,
    wobble_field,
)
from pseudohealthy.phantom.realism import stream
from pseudohealthy.templates.lobes import load_lobe_atlas
from pseudohealthy.templates.mni import load_tissue_priors

# Intended values are drawn inside these ranges, well within the benchmark's strata (SIZE_STRATA in cm³,
# CONTRAST_STRATA), so that the native volume (the subject's brain is ±6 % per axis of the template's)
# and the measured contrast land in the same stratum.
SIZE_RANGES_CM3 = ((0.3, 0.75), (1.35, 2.4), (3.9, 6.0))
CONTRAST_RANGES = ((1.04, 1.08), (1.12, 1.18), (1.24, 1.38))
# FLAIR contrast by histology (outside the strata fix-up): IIa faint to subtle, IIb subtle to conspicuous.
FLAIR_RATIO_BY_HISTOLOGY = {"FCD IIa": (1.04, 1.16), "FCD IIb": (1.12, 1.40)}
# Below this contrast a tail toward the ventricle is too faint for a reader to call it a transmantle sign.
TRANSMANTLE_MIN_RATIO = 1.15
# Volume of a lesion of nominal radius r: a sphere times this (its axes are 0.75–1.3 r and its edge wobbles;
# CSF is left out), so that the drawn shape needs little scaling to reach the intended volume.
SHAPE_FILL = 0.9


def volume_cm3(radius_mm: float) -> float:
    return SHAPE_FILL * 4.0 / 3.0 * math.pi * radius_mm**3 / 1000.0


def radius_mm(volume: float) -> float:
    return (volume * 1000.0 / (SHAPE_FILL * 4.0 / 3.0 * math.pi)) ** (1.0 / 3.0)


def stratum(value: float, strata: tuple, cm3: bool = False) -> int:
    """Index of the stratum (evaluation.native_scores.SIZE_STRATA or CONTRAST_STRATA) holding ``value`` (a volume
    in cm³ when ``cm3``, else a contrast)."""
    v = value * 1000.0 if cm3 else value
    return next(k for k, (_, lo, hi) in enumerate(strata) if lo <= v < hi)


def _safe(value: float, ranges: tuple) -> int | None:
    """The range (stratum index) that ``value`` lies in, None if near a stratum boundary."""
    return next((k for k, (lo, hi) in enumerate(ranges) if lo <= value <= hi), None)


@dataclass
class _Graded:
    index: int
    histology: str
    volume: float
    ratio: float
    subtle: bool


def _cover(items: list[_Graded], attr: str, ranges: tuple, rng: np.random.Generator,
           prefers: dict[int, str]) -> None:
    """Give each stratum at least one item (when there are enough): items near a boundary are moved
    first, then items from the fullest stratum; subtle lesions are moved last; ``prefers`` names the
    histology a stratum's new member should preferably have."""
    for k in range(len(ranges)):
        strata = [_safe(getattr(it, attr), ranges) for it in items]
        if k in strata:
            continue
        counts = {s: strata.count(s) for s in set(strata)}
        donors = [i for i, s in enumerate(strata) if s is None or counts[s] >= 2]
        if not donors:
            continue

        def rank(i: int) -> tuple:
            it = items[i]
            return (it.subtle, it.histology != prefers.get(k, it.histology), strata[i] is not None,
                    -counts[strata[i]], rng.random())

        chosen = items[min(donors, key=rank)]
        setattr(chosen, attr, float(rng.uniform(*ranges[k])))


def _draw_graded(i: int, spec: LesionSpec, histology: str, subtle: bool, seed: int) -> _Graded:
    """One lesion's intended volume and contrast, from its own stream; every value is drawn whether used or
    not, so that marking this lesion subtle (or another one) shifts no other lesion's draws."""
    rng = stream(seed, i, "fcd_range_plan")
    subtle_volume = float(rng.uniform(*SIZE_RANGES_CM3[0]))
    subtle_ratio = float(rng.uniform(*CONTRAST_RANGES[0]))
    ratio = float(rng.uniform(*FLAIR_RATIO_BY_HISTOLOGY[histology]))
    if subtle:
        return _Graded(i, histology, subtle_volume, subtle_ratio, True)
    return _Graded(i, histology, volume_cm3(spec.radius_mm), ratio, False)


def grade_lesions(lesions: dict[int, tuple[LesionSpec, str]], test: set[int], subtle: set[int], seed: int
                  ) -> dict[int, LesionSpec]:
    """Intended volume and FLAIR contrast of each patient's lesion (index -> (drawn spec, histology)).

    Volumes follow the drawn radius; contrasts the histology; subtle test lesions get a small, faint lesion
    without the transmantle sign; then test lesions are re-graded so that every size and contrast stratum
    holds one of them. Each lesion draws from its own stream and the re-grading touches test lesions only,
    so a training lesion is the same whichever patients are test or subtle. The transmantle sign is kept
    only from ``TRANSMANTLE_MIN_RATIO`` up."""
    items = {i: _draw_graded(i, spec, histology, i in subtle, seed)
             for i, (spec, histology) in sorted(lesions.items())}
    test_items = [items[i] for i in sorted(test) if i in items]
    rng = stream(seed, -1, "fcd_range")
    _cover(test_items, "volume", SIZE_RANGES_CM3, rng, {})
    _cover(test_items, "ratio", CONTRAST_RANGES, rng, {0: "FCD IIa", 2: "FCD IIb"})
    out = {}
    for i, it in items.items():
        spec = lesions[i][0]
        transmantle = spec.transmantle and not it.subtle and it.ratio >= TRANSMANTLE_MIN_RATIO
        out[i] = replace(spec, radius_mm=radius_mm(it.volume), volume_cm3=round(it.volume, 4),
                         flair_ratio=round(it.ratio, 4), transmantle=transmantle)
    return out


# ---- drawing ------------------------------------------------------------------------------------------

# Trilinear sampling at the scans' arbitrary positions blurs more than sampling one grid of them: about a
# tent kernel's spread (sigma ~0.4 voxel), added before sampling.
NATIVE_BLUR = 0.4
PHASES = (0.0, 0.5)
THICKENING = 0.6  # share of the WM under the cortex that turns grey (legacy lesion: the same)
MAX_PLACES = 8  # places tried for a lesion whose contrast cannot be reached where it was put
CONTRAST_TOLERANCE = 0.01


@cache
def nominal_signals() -> dict[str, float]:
    """Nominal 3 T FLAIR signals of the realistic tissues (no per-subject jitter)."""
    return tissue_signals(realistic_tissues(TISSUES, 3.0), FLAIR)


@dataclass
class _Draft:
    """A lesion drawn in a box, with the dysplastic tissue not yet dosed."""

    center: np.ndarray
    box: tuple[slice, ...]
    radii: np.ndarray
    scale: float
    gm: np.ndarray  # after thickening and blurring
    wm: np.ndarray
    csf: np.ndarray
    blob: np.ndarray
    tube: np.ndarray | None
    mask: np.ndarray
    noise: np.ndarray  # the wobble's noise cube, and the template voxels the mask was scaled to hold
    target_voxels: float
    thickening: float = 0.6

    def tissue(self, amount: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """gm, wm and dysplastic fractions with ``amount`` (0–1) of dysplastic tissue."""
        from_wm = amount * self.blob * self.wm
        from_gm = 0.5 * amount * self.blob * self.gm
        gm, wm, fcd = self.gm - from_gm, self.wm - from_wm, from_wm + from_gm
        if self.tube is not None:
            tail = 0.8 * amount * self.tube * wm
            fcd, wm = fcd + tail, wm - tail
        return gm, wm, fcd

    def contrast_curve(self, s: dict[str, float], steps: np.ndarray, head: np.ndarray | float = 0.0) -> "_Curve":
        """The lesion's FLAIR contrast as a function of the amount of dysplastic tissue, with tissue FLAIR
        signals ``s`` and the signal ``head`` of the head around the brain, measured as on the native grid
        whose voxel steps are the columns of ``steps`` (in template voxels; trilinear sampling, as the scans
        are made). The signal is a + amount·b + amount²·c (the transmantle tail takes its tissue from what
        the blob left)."""
        gm, wm, blob = self.gm, self.wm, self.blob
        a = gm * s["gm"] + wm * s["wm"] + self.csf * s["csf"] + head
        b = -0.5 * blob * gm * s["gm"] - blob * wm * s["wm"] + (blob * wm + 0.5 * blob * gm) * s["dysplasia"]
        c = np.zeros_like(a)
        if self.tube is not None:
            b = b + 0.8 * self.tube * wm * (s["dysplasia"] - s["wm"])
            c = -0.8 * self.tube * blob * wm * (s["dysplasia"] - s["wm"])
        side = int(np.ceil(max(a.shape) / np.linalg.norm(steps, axis=0).min()))
        means = []
        for phase in PHASES:  # the scan's grid falls anywhere on the template: average over sub-voxel shifts
            offset = (np.array(a.shape) - 1) / 2 - steps @ np.full(3, (side - 1) / 2 - phase)

            def native(x: np.ndarray, blur: float = NATIVE_BLUR) -> np.ndarray:
                x = ndi.gaussian_filter(x.astype(np.float32), blur) if blur else x.astype(np.float32)
                return ndi.affine_transform(x, steps, offset=offset, output_shape=(side,) * 3, order=1, mode="nearest")

            lesion = native(self.mask, blur=0.0) > 0.5
            means.append([m for x in (a, b, c) for m in _lesion_and_shell_means(lesion, native(x))])
        return _Curve(*np.mean(means, axis=0))


def _lesion_and_shell_means(lesion: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """Mean of ``image`` in the lesion and in the shell that ``lesion_contrast`` (the benchmark's measure)
    compares it with, the shell taken from lesion_contrast itself so that the two cannot drift apart: with
    the image shifted to be positive, the shell's mean is the lesion's over the contrast."""
    shift = 1.0 + float(np.abs(image).max())
    inside = float(image[lesion].mean())
    return inside, (inside + shift) / lesion_contrast(lesion, image + np.float32(shift)) - shift


@dataclass(frozen=True)
class _Curve:
    """Mean FLAIR signal in the lesion (l) and its shell (s): terms a + amount·b + amount²·c."""

    la: float
    sa: float
    lb: float
    sb: float
    lc: float
    sc: float

    def __call__(self, amount: float) -> float:
        return (self.la + amount * self.lb + amount**2 * self.lc) / (self.sa + amount * self.sb + amount**2 * self.sc)


def _half(spec: LesionSpec) -> int:
    """Half the side of the box that holds the lesion's blob at any scale (blob edge <= 2.8 radii)."""
    return int(np.ceil(2.8 * spec.radius_mm)) + 6


def _noise_in_box(noise: np.ndarray, center: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``noise`` (a cube centred on ``center``) laid into ``box``; zero where the cube does not reach."""
    h = noise.shape[0] // 2
    out = np.zeros(tuple(b.stop - b.start for b in box), np.float32)
    src, dst = [], []
    for c, b in zip(center, box):
        lo, hi = max(b.start, int(c) - h), min(b.stop, int(c) + h + 1)
        src.append(slice(lo - (int(c) - h), hi - (int(c) - h)))
        dst.append(slice(lo - b.start, hi - b.start))
    out[tuple(dst)] = noise[tuple(src)]
    return out


@dataclass(frozen=True)
class _Shape:
    """What a lesion keeps wherever it is placed: axis factors (times its radius) and orientation."""

    factors: np.ndarray
    rot: np.ndarray


def _draft(maps: TissueMaps, spec: LesionSpec, center: np.ndarray, shape: _Shape, noise: np.ndarray,
           target_voxels: float, thickening: float = THICKENING) -> _Draft:
    """Shape the lesion at ``center`` and scale it so that its mask holds ``target_voxels`` (1 mm³ each)."""
    atlas = load_lobe_atlas()
    tissue = load_tissue_priors()
    half = _half(spec)
    seg = None
    if spec.transmantle:
        target = transmantle_target(center, spec.hemisphere, atlas)
        half = max(half, int(np.abs(target - center).max()) + 6)
        seg = (target - center).astype(np.float32)
    box, rel = box_coords(center, half, maps.gm.shape)
    wobble = wobble_field(_noise_in_box(noise, center, box))
    prior = (tissue.gm[box] + tissue.wm[box]) > 0.5

    def outline(scale: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        radii = spec.radius_mm * scale * shape.factors
        blob = soft_blob(rel, radii, shape.rot, wobble)
        mask = (blob > 0.5) & prior
        tube = None
        if seg is not None:
            tube = transmantle_tube(rel, seg, spec.radius_mm * scale)
            mask |= (tube > 0.5) & (maps.wm[box] > 0.3)
        return blob, tube, mask

    scale = 1.0
    for _ in range(6):
        blob, tube, mask = outline(scale)
        ratio = target_voxels / max(int(mask.sum()), 1)
        if abs(ratio - 1.0) < 0.03:
            break
        scale = float(np.clip(scale * ratio ** (1 / 3), 0.4, 1.6))
    else:
        blob, tube, mask = outline(scale)
    gm, wm = thicken_and_blur(maps.gm[box], maps.wm[box], blob, thickening)
    return _Draft(center, box, spec.radius_mm * scale * shape.factors, scale, gm, wm, maps.csf[box], blob, tube, mask,
                  noise, target_voxels, thickening)


def _dose(curve: _Curve, target: float) -> tuple[float, float]:
    """The amount of dysplastic tissue (0–1) whose contrast is nearest ``target``, and that contrast."""
    lo, hi = 0.0, 1.0
    if curve(lo) >= target:
        return lo, curve(lo)
    if curve(hi) <= target:
        return hi, curve(hi)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if curve(mid) < target else (lo, mid)
    return 0.5 * (lo + hi), curve(0.5 * (lo + hi))


@dataclass(frozen=True)
class FirstScan:
    """What the subject's first FLAIR will be: its tissue FLAIR signals at 3 T and at its field strength;
    its voxel steps (columns, in template voxels) near a template voxel; the FLAIR signal of the head around
    the brain (scalp, skull) in a box, given tissue signals."""

    signals_3t: dict[str, float]
    signals: dict[str, float]
    steps: Callable[[np.ndarray], np.ndarray]
    head: Callable[[tuple[slice, ...], dict[str, float]], np.ndarray | float]
    voxel_mm3: float = 1.1 * 1.1 * 1.2

    def template_voxels(self, volume_cm3: float, center_vox: np.ndarray) -> float:
        """Template voxels (1 mm³) that the scan will show as ``volume_cm3`` near ``center_vox``."""
        return volume_cm3 * 1000.0 * abs(float(np.linalg.det(self.steps(center_vox)))) / self.voxel_mm3


def _measure(draft: _Draft, scan: FirstScan, signals: dict[str, float]) -> _Curve:
    """The draft's contrast curve as ``scan`` samples it, with tissue FLAIR signals ``signals``."""
    return draft.contrast_curve(signals, scan.steps(draft.center), scan.head(draft.box, signals))


def _place(maps: TissueMaps, spec: LesionSpec, center: np.ndarray, shape: _Shape, noise: np.ndarray,
           scan: FirstScan, own: np.random.Generator) -> tuple[_Draft, int]:
    """The lesion drawn at ``center``, or, where its contrast cannot be reached there at 3 T, at another place
    of its lobe (from ``own``: deeper if it was too bright, shallower if too faint; up to ``MAX_PLACES``).
    Chosen at 3 T so that the field strength moves no mask. Returns the best draft and the places tried."""
    atlas = load_lobe_atlas()
    depth_map = junction_and_depth()[1]
    best, candidates, weight, achieved = None, None, None, 0.0
    for tried in range(1, MAX_PLACES + 1):
        if tried > 1:
            if candidates is None:
                candidates = next(c for relax in (1.0, 1.5, 2.5, 4.0)
                                  if len(c := center_candidates(spec, atlas, relax)))
                depth = depth_map[tuple(candidates.T)]
                weight = np.exp(-0.5 * ((depth - 14.0) / 6.0) ** 2) + 1e-3
            here = depth_map[tuple(center)]
            # Shallow lesions have dark sulcal and extra-axial CSF in their shell (a high contrast); deep ones not.
            toward = (depth > here) if achieved > spec.flair_ratio else (depth < here)
            pick = weight * (toward if toward.any() else 1.0)
            center = candidates[own.choice(len(candidates), p=pick / pick.sum())]
            noise = own.standard_normal(noise.shape).astype(np.float32)
        draft = _draft(maps, spec, center, shape, noise, scan.template_voxels(spec.volume_cm3, center))
        achieved = _dose(_measure(draft, scan, scan.signals_3t), spec.flair_ratio)[1]
        if best is None or abs(achieved - spec.flair_ratio) < abs(best[1] - spec.flair_ratio):
            best = (draft, achieved)
        if abs(achieved - spec.flair_ratio) <= CONTRAST_TOLERANCE:
            break
    return best[0], tried


def _thin(maps: TissueMaps, spec: LesionSpec, shape: _Shape, draft: _Draft, scan: FirstScan) -> _Draft:
    """The draft, thickened less if it is too bright on the subject's own scanner even without dysplastic
    tissue (a faint lesion in a small lobe, or at 1.5 T, where grey–white contrast is higher): its thickened
    cortex is what makes it brighter than its shell. The mask does not depend on the thickening."""
    best, contrast = draft, _measure(draft, scan, scan.signals)(0.0)
    if contrast <= spec.flair_ratio + CONTRAST_TOLERANCE:
        return draft
    lo, hi = 0.0, THICKENING
    for _ in range(6):
        trial = _draft(maps, spec, draft.center, shape, draft.noise, draft.target_voxels, 0.5 * (lo + hi))
        trial_contrast = _measure(trial, scan, scan.signals)(0.0)
        if abs(trial_contrast - spec.flair_ratio) < abs(contrast - spec.flair_ratio):
            best, contrast = trial, trial_contrast
        lo, hi = (lo, 0.5 * (lo + hi)) if trial_contrast > spec.flair_ratio else (0.5 * (lo + hi), hi)
    return best


def _nominal_scan(_: np.random.Generator) -> FirstScan:
    """Nominal 3 T signals, axis-aligned 1.1 × 1.1 × 1.2 mm voxels, no head around the brain."""
    return FirstScan(nominal_signals(), nominal_signals(), lambda _: np.diag([1.1, 1.1, 1.2]), lambda box, s: 0.0)


def add_graded_lesion(maps: TissueMaps, spec: LesionSpec, rng: np.random.Generator, seed: int, index: int,
                      first_scan: Callable[[np.random.Generator], FirstScan] = _nominal_scan
                      ) -> tuple[LesionTruth, dict]:
    """Draw a lesion of ``spec.volume_cm3`` whose FLAIR contrast is ``spec.flair_ratio`` into ``maps``.

    The contrast is calibrated without confounds, as the subject's first FLAIR will sample it: with the
    tissue FLAIR signals and local voxel steps that ``first_scan`` finds from a copy of ``rng`` after the
    lesion's draws (the subject's stream draws its head's deformation, pose and tissue values next).
    The lesion is placed (:func:`_place`, at 3 T), thickened less if still too bright (:func:`_thin`) and
    dosed with dysplastic tissue (:func:`_dose`), both at the subject's field strength.

    The place and shape are drawn from ``rng`` (the subject's stream, as the legacy lesion); other places,
    when needed, from the lesion's own stream. Returns the lesion truth and what the drawing achieved."""
    center = pick_center(rng, spec, load_lobe_atlas())
    shape = _Shape(rng.uniform(0.75, 1.3, 3),
                   Rotation.random(random_state=int(rng.integers(2**31))).as_matrix().astype(np.float32))
    width = 2 * _half(spec) + 1
    noise = rng.standard_normal((width, width, width)).astype(np.float32)
    scan = first_scan(copy.deepcopy(rng))
    draft, tried = _place(maps, spec, center, shape, noise, scan, stream(seed, index, "fcd_range"))
    draft = _thin(maps, spec, shape, draft, scan)
    amount, achieved = _dose(_measure(draft, scan, scan.signals), spec.flair_ratio)
    gm, wm, fcd = draft.tissue(amount)
    maps.gm[draft.box], maps.wm[draft.box] = gm, wm
    maps.patches.append(("dysplasia", draft.box, fcd.astype(np.float32)))
    maps.lesion_mask[draft.box] = np.maximum(maps.lesion_mask[draft.box], draft.mask.astype(np.float32))
    truth = lesion_truth(draft.mask, draft.box, draft.center, draft.radii, spec.hemisphere)
    return truth, {
        "intended_volume_cm3": spec.volume_cm3,
        "intended_flair_ratio": spec.flair_ratio,
        "template_flair_ratio": round(achieved, 4),  # as a FLAIR grid without confounds would measure it
        "dysplasia_amount": round(amount, 4),
        "shape_scale": round(draft.scale, 3),
        "thickening": round(draft.thickening, 3),
        "places_tried": tried,
    }
