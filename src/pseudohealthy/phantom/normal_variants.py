"""Normal anatomy that FLAIR shows bright, drawn into a subject's tissue maps (template grid).

Each variant turns a fraction of grey or white matter into a tissue with longer T2 (contrast.py), where
the atlases put it, so a healthy brain has FLAIR-bright places that its anatomy explains:

- regional_cortex: insular, cingulate and mesial temporal (hippocampus, amygdala, parahippocampal and
  entorhinal) cortex has longer T2 than other cortex (Georgiades et al., AJNR 2001), every subject;
- corticospinal_tract: mildly bright from the internal capsule up and down over 0.5–5.5 cm (all 40
  volunteers of a fast-FLAIR study, Neuroradiology 1997; common at 3 T, AJNR 2009;30:911); fainter at 1.5 T;
- periventricular: caps at the frontal (90 %) and occipital (77 %) horns, 54 % asymmetric; a thin line
  around the third and fourth ventricles (all subjects, Neuroradiology 1997); a thin band lining the lateral
  ventricles (60 %, assumption);
- punctate_wmh: 2–5 mm foci in deep white matter, their number rising with age (Hopkins et al. 2006;
  AJNR 2009;30:911; NeuroImage 2004;22:144), patients and controls alike;
- cortical_partial_volume: patches where the cortex–CSF border is blurred (oblique, thin cortex).

No variant acts within ``lesion.LESION_GUARD_MM`` of the lesion, so that the lesion and the shell its contrast
is measured against stay as the lesion was calibrated. Every variant draws from its own stream and returns
truth records: kind, where (template mm), strength (the fraction converted at its peak) and ``flair_ratio``,
the FLAIR signal there over that of the tissue it replaced (nominal tissue values at the subject's field
strength, no jitter).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.phantom import anatomy
from pseudohealthy.phantom.contrast import FLAIR, TISSUES, realistic_tissues, tissue_signals
from pseudohealthy.phantom.lesion import TissueMaps
from pseudohealthy.phantom.realism import stream
from pseudohealthy.templates.mni import load_tissue_priors

VARIANTS = ("cortical_partial_volume", "regional_cortex", "corticospinal_tract", "periventricular", "punctate_wmh")

REGIONAL_STRENGTH = {"insula": (0.3, 0.6), "cingulate": (0.35, 0.7), "mesial_temporal": (0.45, 0.85)}
P_FRONTAL_CAPS, P_OCCIPITAL_CAPS, P_ASYMMETRIC_CAPS, P_LATERAL_BAND = 0.9, 0.77, 0.54, 0.6
ASSUMED_AGE = 35  # for subjects whose age is not known (n/a)


def wmh_rate(age: float | None) -> float:
    """Expected number of punctate WMH at 3 T: rare before 30, a few by 45, several by 60 (between the
    screened cohort of Hopkins et al. 2006, 5 % with any at 16–65, and the 3 T study AJNR 2009;30:911, 68 %
    at 30–53 with 10 on average)."""
    a = ASSUMED_AGE if age is None else age
    return 0.03 + 4.0 * max(a - 20.0, 0.0) ** 2 / 40.0**2


# At 1.5 T about 0.6 as many foci are seen (AJNR 2009;30:911: 5.5 vs 9.4): each focus of 3 T is kept with this
# probability, so that the field strength changes how many foci show, not where they are.
WMH_SEEN_AT_1P5T = 0.6


def _nominal_flair(field_t: float) -> dict[str, float]:
    return tissue_signals(realistic_tissues(TISSUES, field_t), FLAIR)


def _ratio(strength: float, tissue: str, source: str, field_t: float) -> float:
    s = _nominal_flair(field_t)
    return round(1.0 + strength * (s[tissue] / s[source] - 1.0), 4)


def _away_from(lesion: np.ndarray, vox: np.ndarray, distance: float) -> bool:
    """No lesion voxel within ``distance`` voxels of ``vox``."""
    box = tuple(slice(max(int(c - distance), 0), int(c + distance) + 1) for c in vox)
    idx = np.argwhere(lesion[box] > 0.5)
    return not len(idx) or float(np.min(np.linalg.norm(idx + [b.start for b in box] - vox, axis=1))) > distance


def regional_cortex(maps: TissueMaps, rng: np.random.Generator, field_t: float, **_) -> list[dict]:
    out = []
    for name, (lo, hi) in REGIONAL_STRENGTH.items():
        base = rng.uniform(lo, hi)
        for hemi in anatomy.HEMISPHERES:
            strength = float(np.clip(base * rng.uniform(0.85, 1.15), 0, 1))
            region = anatomy.limbic_cortex()[(name, hemi)]
            maps.convert(region.box, strength * region.weight, "cortex_long_t2", ("gm",))
            out.append({"kind": "regional_cortex", "region": name, "hemisphere": hemi,
                        "center_template_mm": region.center_mm(), "strength": round(strength, 4),
                        "flair_ratio": _ratio(strength, "cortex_long_t2", "gm", field_t)})
    return out


def _tract(hemisphere: str, z_range: tuple[float, float]) -> anatomy.Region:
    """The corticospinal tract of one side, between two heights (template mm, soft ends)."""
    region = anatomy.corticospinal_tracts()[hemisphere]
    affine = load_tissue_priors().affine
    z = affine[2, 2] * np.arange(region.box[2].start, region.box[2].stop) + affine[2, 3]
    window = 1 / (1 + np.exp(-(z - z_range[0]) / 1.5)) / (1 + np.exp(-(z_range[1] - z) / 1.5))
    return anatomy.Region(region.box, region.weight * window[None, None, :].astype(np.float32))


def corticospinal_tract(maps: TissueMaps, rng: np.random.Generator, field_t: float, **_) -> list[dict]:
    """Bright over a stretch of the tract centred at the posterior limb of the internal capsule."""
    extent = float(np.clip(rng.lognormal(np.log(25.0), 0.45), 5.0, 55.0))  # mm; median 2.5 cm
    center_z = float(rng.uniform(2.0, 12.0))  # template mm: the posterior limb of the internal capsule
    z_range = (round(center_z - extent / 2, 1), round(center_z + extent / 2, 1))
    base = rng.uniform(0.3, 0.65) * (0.6 if field_t == 1.5 else 1.0)
    out = []
    for hemi in anatomy.HEMISPHERES:
        strength = float(base * rng.uniform(0.8, 1.2))
        region = _tract(hemi, z_range)
        maps.convert(region.box, strength * region.weight, "wm_long_t2", ("wm",))
        peak = strength * float(region.weight.max())
        out.append({"kind": "corticospinal_tract", "hemisphere": hemi, "center_template_mm": region.center_mm(),
                    "z_range_template_mm": list(z_range), "strength": round(peak, 4),
                    "flair_ratio": _ratio(peak, "wm_long_t2", "wm", field_t)})
    return out


def periventricular(maps: TissueMaps, rng: np.random.Generator, field_t: float, always: bool, caps: bool,
                    **_) -> list[dict]:
    """Caps at the horns of the lateral ventricles, and bands lining the ventricles. ``caps``: the plan's
    draw of frontal caps (the stream's first draw, so plan and image agree)."""
    rng.random()  # the plan's draw of frontal caps (dataset.py): consumed so that the rest is the same
    out = []
    for horn, present in (("frontal", caps or always), ("occipital", always or rng.random() < P_OCCIPITAL_CAPS)):
        base = rng.uniform(0.3, 0.6)
        weak = rng.integers(2) if rng.random() < P_ASYMMETRIC_CAPS else -1  # the fainter side, if asymmetric
        for k, side in enumerate(anatomy.HEMISPHERES):
            strength = float(base * (rng.uniform(0.3, 0.7) if k == weak else 1.0))
            if not present:
                continue
            region = anatomy.horn_tips()[(horn, side)]
            maps.convert(region.box, strength * region.weight, "cap", ("wm",))
            out.append({"kind": "periventricular_cap", "horn": horn, "hemisphere": side,
                        "center_template_mm": region.center_mm(), "strength": round(strength, 4),
                        "flair_ratio": _ratio(strength, "cap", "wm", field_t)})
    for name, present in (("third", True), ("fourth", True),
                          ("lateral", always or rng.random() < P_LATERAL_BAND)):
        strength = float(rng.uniform(0.3, 0.6))
        if not present:
            continue
        region = anatomy.ventricle_linings()[name]
        maps.convert(region.box, strength * region.weight, "cap", ("gm", "wm"))
        out.append({"kind": "periventricular_band", "ventricle": name, "center_template_mm": region.center_mm(),
                    "thickness_mm": 2.0, "strength": round(strength, 4),
                    "flair_ratio": _ratio(strength, "cap", "wm", field_t)})
    return out


def punctate_wmh(maps: TissueMaps, rng: np.random.Generator, field_t: float, always: bool, age: int | None,
                 thinning: np.random.Generator, **_) -> list[dict]:
    """Small round foci in deep white matter, at least 8 mm from the lesion and 6 mm from each other: placed
    as a 3 T scan shows them (from ``rng``), then at 1.5 T thinned (from ``thinning``): fewer, none moved."""
    n = min(int(rng.poisson(wmh_rate(age))), 15)
    foci = _place_foci(maps.lesion_mask, rng, max(n, 3) if always else n)
    keep = thinning.random(len(foci)) < (WMH_SEEN_AT_1P5T if field_t == 1.5 else 1.0)
    if always:
        keep[:3] = True
    out = []
    for (vox, radius, strength, axes), kept in zip(foci, keep):
        if not kept:
            continue
        focus = _focus(vox, axes)
        maps.convert(focus.box, strength * focus.weight, "wmh", ("wm", "gm"))
        out.append({"kind": "punctate_wmh", "center_template_mm": anatomy.template_mm(vox),
                    "radius_mm": round(radius, 2), "axes_mm": axes, "strength": round(strength, 4),
                    "flair_ratio": _ratio(strength, "wmh", "wm", field_t)})
    return out


def _place_foci(lesion: np.ndarray, rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, float, float, list]]:
    """Up to ``n`` foci (centre voxel, radius, strength, axes) in deep white matter, away from ``lesion``
    and from each other."""
    candidates = anatomy.cerebral_white_matter()
    foci: list[tuple[np.ndarray, float, float, list]] = []
    for _ in range(50 * max(n, 1)):
        if len(foci) == n:
            break
        vox = candidates[rng.integers(len(candidates))]
        if (not anatomy.is_deep_white_matter(vox) or not _away_from(lesion, vox, 8.0)
                or any(np.linalg.norm(vox - f[0]) < 6.0 for f in foci)):
            continue
        radius = float(rng.uniform(1.0, 2.5))  # mm: 2–5 mm across
        strength = float(rng.uniform(0.6, 1.0))
        axes = [round(radius, 2), round(radius, 2), round(radius * rng.uniform(1.0, 1.5), 2)]
        foci.append((vox, radius, strength, axes))
    return foci


def _focus(vox: np.ndarray, axes_mm: list[float]) -> anatomy.Region:
    """A small soft ellipsoid (axes along x, y, z) centred on a template voxel, within 5 voxels of it and
    inside the template grid."""
    shape = load_tissue_priors().gm.shape
    box = tuple(slice(max(int(c) - 5, 0), min(int(c) + 6, n)) for c, n in zip(vox, shape))
    offset = (np.asarray(vox) - [b.start for b in box]).astype(np.float32)[:, None, None, None]
    rel = np.indices(tuple(b.stop - b.start for b in box)).astype(np.float32) - offset
    rho = np.sqrt(sum((rel[k] / axes_mm[k]) ** 2 for k in range(3)))
    return anatomy.Region(box, (1 / (1 + np.exp((rho - 1.0) / 0.25))).astype(np.float32))


def _patch(vox: np.ndarray, radius: float, sigma: float) -> anatomy.Region:
    """A partial-volume patch: a soft ball around a template voxel, times the cortex–CSF border weight."""
    half = int(radius + 3 * sigma) + 2
    box = tuple(slice(max(int(c) - half, 0), int(c) + half + 1) for c in vox)
    border = anatomy.cortex_csf_border()[box]
    rel = np.indices(border.shape).astype(np.float32) - (np.asarray(vox) - [b.start for b in box])[:, None, None, None]
    ball = 1 / (1 + np.exp((np.sqrt((rel**2).sum(axis=0)) - radius) / 1.5))
    return anatomy.Region(box, (ball * border).astype(np.float32))


def cortical_partial_volume(maps: TissueMaps, rng: np.random.Generator, always: bool, **_) -> list[dict]:
    """Patches (10–20 mm) where the cortex–CSF border is blurred (Gaussian σ 1–1.8 mm, ``sigma_mm``), away from
    the lesion; ``strength`` is the share of blurred tissue mixed in at the patch's peak."""
    n = 4 if always else int(rng.integers(2, 5))
    candidates = anatomy.border_cortex()
    out: list[dict] = []
    for _ in range(40 * n):
        if len(out) == n:
            break
        vox = candidates[rng.integers(len(candidates))]
        radius, sigma = float(rng.uniform(10.0, 20.0)), float(rng.uniform(1.0, 1.8))
        if not _away_from(maps.lesion_mask, vox, radius + 8.0) or any(
                np.linalg.norm(np.subtract(vox, o["center_vox"])) < 30.0 for o in out):
            continue
        patch = _patch(vox, radius, sigma)
        box, weight = patch.box, patch.weight * maps.lesion_guard(patch.box)
        for name in ("gm", "wm", "csf"):
            tissue = getattr(maps, name)
            tissue[box] = (1 - weight) * tissue[box] + weight * ndi.gaussian_filter(tissue[box], sigma)
        out.append({"kind": "cortical_partial_volume", "center_vox": vox,
                    "center_template_mm": anatomy.template_mm(vox),
                    "radius_mm": round(radius, 2), "sigma_mm": round(sigma, 2),
                    "strength": round(float(weight.max()), 4)})
    for o in out:
        o.pop("center_vox")
    return out


_DRAW: dict[str, Callable[..., list[dict]]] = {
    "cortical_partial_volume": cortical_partial_volume, "regional_cortex": regional_cortex,
    "corticospinal_tract": corticospinal_tract, "periventricular": periventricular, "punctate_wmh": punctate_wmh}


def add_normal_variants(maps: TissueMaps, seed: int, index: int, enabled: tuple[str, ...], always: tuple[str, ...],
                        field_t: float, age: int | None, caps: bool) -> list[dict]:
    """Draw the ``enabled`` variants into ``maps`` (after the lesion, which they avoid); return their truth."""
    out: list[dict] = []
    for name in VARIANTS:
        if name in enabled:
            out += _DRAW[name](maps, stream(seed, index, name), field_t=field_t, always=name in always, age=age,
                               caps=caps, thinning=stream(seed, index, f"{name}_thinning"))
    return out


def footprint(record: dict) -> anatomy.Region:
    """Where a variant or CSF-inflow record says it is, as a soft region on the template grid (peak about 1;
    the converted fraction there is ``strength`` times it, none within ``lesion.LESION_GUARD_MM`` of a lesion;
    inflow fills a random part of its site)."""
    kind = record["kind"]
    if kind == "regional_cortex":
        return anatomy.limbic_cortex()[(record["region"], record["hemisphere"])]
    if kind == "corticospinal_tract":
        return _tract(record["hemisphere"], tuple(record["z_range_template_mm"]))
    if kind == "periventricular_cap":
        return anatomy.horn_tips()[(record["horn"], record["hemisphere"])]
    if kind == "periventricular_band":
        return anatomy.ventricle_linings()[record["ventricle"]]
    if kind == "csf_inflow":
        return anatomy.inflow_sites()[record["site"]]
    inverse = np.linalg.inv(load_tissue_priors().affine)
    vox = np.rint(inverse[:3, :3] @ np.asarray(record["center_template_mm"]) + inverse[:3, 3]).astype(int)
    if kind == "punctate_wmh":
        return _focus(vox, record["axes_mm"])
    if kind == "cortical_partial_volume":
        return _patch(vox, record["radius_mm"], record["sigma_mm"])
    raise ValueError(f"no footprint for {kind!r}")


def plan_frontal_caps(seed: int, index: int) -> bool:
    """Whether a subject has frontal caps: the first draw of its periventricular stream (90 %)."""
    return bool(stream(seed, index, "periventricular").random() < P_FRONTAL_CAPS)
