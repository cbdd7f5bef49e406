"""The realistic phantom's confounds, measured from the images: each appears where and as strongly as
truth.json says; none moves the lesion; the legacy setting still gives the old images.

One patient is rendered five times from the same seed, with no confound, with the normal variants (and
CSF inflow), with the scanner's artefacts, at 1.5 T, and with CSF inflow alone (rare confounds forced): the
noise and geometry are the same in all five, so ratios of the images isolate each confound.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from pseudohealthy import __version__
from pseudohealthy.metrics import lesion_contrast
from pseudohealthy.phantom.artefacts import nonuniformity_at
from pseudohealthy.phantom.contrast import TISSUES, Tissue, realistic_tissues
from pseudohealthy.phantom.dataset import plan_dataset
from pseudohealthy.phantom.fcd_range import radius_mm
from pseudohealthy.phantom.geometry import Deformation
from pseudohealthy.phantom.lesion import TissueMaps
from pseudohealthy.phantom import anatomy
from pseudohealthy.phantom.normal_variants import VARIANTS as VARIANTS_DRAWN
from pseudohealthy.phantom.normal_variants import add_normal_variants, footprint
from pseudohealthy.phantom.realism import LEGACY, only
from pseudohealthy.phantom.readback import deformation_path
from pseudohealthy.phantom.subject import render_subject
from pseudohealthy.templates.mni import load_tissue_priors

SEED, PATIENT = 7, 0  # sub-00001 of the tiny dataset's plan: a patient with one FLAIR
VARIANTS = ("regional_cortex", "corticospinal_tract", "periventricular", "punctate_wmh", "cortical_partial_volume",
            "csf_inflow")
SCANNER = ("residual_nonuniformity", "motion_ringing")


@dataclass
class Render:
    truth: dict
    bids: Path
    truth_dir: Path

    def image(self, suffix: str) -> nib.Nifti1Image:
        plan, pid = self.truth["plan"], self.truth["participant_id"]
        acq = {"T1w": plan["t1_acq"], "FLAIR": plan["flair_acq"], "FLAIR_roi": plan["mask_acq"]}[suffix]
        return nib.load(self.bids / pid / "anat" / f"{pid}_acq-{acq}_{suffix}.nii.gz")

    def data(self, suffix: str) -> np.ndarray:
        return np.asarray(self.image(suffix).dataobj, dtype=np.float32)


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, Render]:
    root = tmp_path_factory.mktemp("realism")
    settings = {
        "none": only(()),
        "variants": only(VARIANTS, always=("periventricular", "punctate_wmh", "csf_inflow")),
        "scanner": only(SCANNER, always=("motion_ringing",)),
        "field": only(("field_strength",), always=("field_strength",)),
        "inflow": only(("csf_inflow",), always=("csf_inflow",)),
    }
    out = {}
    for name, realism in settings.items():
        plan = plan_dataset(2, 1, seed=SEED, realism=realism)[PATIENT]
        truth = render_subject(plan, SEED, root / name, root / f"{name}_truth")
        out[name] = Render(json.loads(json.dumps(truth)), root / name, root / f"{name}_truth")
    return out


def _template_voxels(render: Render, suffix: str) -> np.ndarray:
    """(N, 3) template voxel (nearest) shown by each voxel of the subject's T1w or FLAIR, C order."""
    img = render.image(suffix)
    geometry = render.truth["geometry"]
    world_to_anat = np.linalg.inv(np.asarray(geometry["anatomical_to_t1w_world"]))
    if suffix != "T1w":
        world_to_anat = world_to_anat @ np.linalg.inv(np.asarray(geometry["t1w_world_to_flair_world"]))
    ijk = np.indices(img.shape).reshape(3, -1).astype(np.float32)
    vox_to_anat = world_to_anat @ img.affine
    anat = (vox_to_anat[:3, :3] @ ijk + vox_to_anat[:3, 3:4]).astype(np.float32)
    template_mm = Deformation.load(deformation_path(render.truth_dir, render.truth["participant_id"])
                                   ).to_template_mm(anat)
    inverse = np.linalg.inv(load_tissue_priors().affine)
    return np.rint(inverse[:3, :3] @ template_mm + inverse[:3, 3:4]).astype(int).T


def _weight(record: dict, voxels: np.ndarray) -> np.ndarray:
    """A record's footprint weight at each native voxel (by its template voxel)."""
    region = footprint(record)
    lo = np.array([b.start for b in region.box])
    rel = voxels - lo
    inside = np.all((rel >= 0) & (rel < region.weight.shape), axis=1)
    out = np.zeros(len(voxels), np.float32)
    out[inside] = region.weight[tuple(rel[inside].T)]
    return out


def _prior(name: str, voxels: np.ndarray) -> np.ndarray:
    volume = getattr(load_tissue_priors(), name)
    return volume[tuple(np.clip(voxels, 0, np.array(volume.shape) - 1).T)]


@pytest.fixture(scope="module")
def flair_voxels(renders) -> np.ndarray:
    assert renders["variants"].truth["geometry"] == renders["none"].truth["geometry"]  # same head, same pose
    return _template_voxels(renders["none"], "FLAIR")


def test_confounds_leave_the_lesion_mask_and_its_truth_unchanged(renders):
    none = renders["none"]
    mask = none.data("FLAIR_roi")
    assert mask.sum() > 100
    # The field strength re-doses the dysplastic tissue (and may thicken a faint lesion less) so that the
    # lesion keeps its intended contrast.
    dose = {"dysplasia_amount", "template_flair_ratio", "flair_contrast_ratio", "thickening"}
    for name in ("variants", "scanner", "field"):
        other = renders[name]
        np.testing.assert_array_equal(other.data("FLAIR_roi"), mask)
        assert {k: v for k, v in other.truth["lesion"].items() if k not in dose} == {
            k: v for k, v in none.truth["lesion"].items() if k not in dose}
        assert other.truth["lesion"]["flair_contrast_ratio"] == pytest.approx(
            none.truth["lesion"]["flair_contrast_ratio"], abs=0.03)
    assert renders["variants"].truth["lesion"] == none.truth["lesion"]


def test_the_lesion_has_its_intended_volume_and_contrast(renders):
    lesion = renders["none"].truth["lesion"]
    assert lesion["volume_mm3"] / 1000 == pytest.approx(lesion["intended_volume_cm3"], rel=0.1)
    assert lesion["flair_contrast_ratio"] == pytest.approx(lesion["intended_flair_ratio"], abs=0.02)


def test_normal_variants_appear_where_and_as_strongly_as_the_truth_says(renders, flair_voxels):
    none, variants = renders["none"].data("FLAIR").ravel(), renders["variants"].data("FLAIR").ravel()
    records = renders["variants"].truth["normal_variants"]
    inflow = renders["variants"].truth["scanner"]["scans"]["FLAIR"]["artefacts"]
    kinds = {r["kind"] for r in records}
    assert kinds == {"regional_cortex", "corticospinal_tract", "periventricular_cap", "periventricular_band",
                     "punctate_wmh", "cortical_partial_volume"}
    assert any(r["kind"] == "csf_inflow" for r in inflow)
    head = none > 0.05 * np.percentile(none, 99)
    ratio = np.where(head, variants / np.maximum(none, 1.0), 1.0)
    weights = {id(r): _weight(r, flair_voxels) for r in records + [r for r in inflow if r["kind"] == "csf_inflow"]}
    near_any = np.zeros(len(none), bool)
    for w in weights.values():
        near_any |= w > 0.005
    # Where: two voxels (the scan's sampling) away from every footprint the image is unchanged (to the
    # int16 rounding).
    shape = renders["none"].image("FLAIR").shape
    far = head & ~ndi.binary_dilation(near_any.reshape(shape), iterations=2).ravel()
    assert np.abs(variants - none)[far].max() <= 1.0
    gm, wm = _prior("gm", flair_voxels), _prior("wm", flair_voxels)
    # Expected ratio where variants overlap (caps and the lining of the ventricles): their changes add up.
    bright = [r for r in records if "flair_ratio" in r]
    expected = 1.0 + sum((r["flair_ratio"] - 1.0) * weights[id(r)] / weights[id(r)].max() for r in bright)
    for r in records:
        w = weights[id(r)]
        if r["kind"] == "cortical_partial_volume":  # the border is blurred: voxels there change
            assert np.abs(ratio[head & (w > 0.5)] - 1.0).mean() > 0.01, r
            continue
        source = {"regional_cortex": gm, "periventricular_band": gm + wm}.get(r["kind"], wm)
        peak = head & (w >= (0.5 if r["kind"] == "punctate_wmh" else 0.8) * w.max()) & (source > 0.85)
        assert peak.sum() >= 3, r
        if r["kind"] == "punctate_wmh":  # a few voxels: the brightest, blurred by the scan's sampling
            measured, target = ratio[peak].max(), r["flair_ratio"]
        else:
            measured, target = np.median(ratio[peak]), np.median(expected[peak])
        # The scan's sampling (1.1–1.3 mm voxels) dilutes small and thin things: 2–5 mm foci, and the 2 mm
        # lining of the ventricles most.
        share = {"periventricular_band": 0.3, "punctate_wmh": 0.45}.get(r["kind"], 0.6)
        assert 1.0 + share * (target - 1.0) - 0.01 < measured < target + 0.04, (r, measured, target)
    cortex = np.median(none[head & (gm > 0.9)])
    for r in inflow:
        if r["kind"] == "csf_inflow":
            added = (variants - none)[head & (weights[id(r)] > 0.3)]
            assert 0.25 * r["strength"] < added.max() / cortex < 1.3 * r["strength"], (r, added.max() / cortex)


def test_csf_inflow_is_a_flair_artefact(renders):
    t1 = renders["variants"].truth["scanner"]["scans"]["T1w"]["artefacts"]
    assert not any(r["kind"] == "csf_inflow" for r in t1)


def test_csf_inflow_changes_its_sites_only_and_not_the_gain(renders, flair_voxels):
    """Away from its sites the FLAIR is the same to the bit: the scanner's gain did not follow the inflow."""
    none, inflow = renders["none"], renders["inflow"]
    np.testing.assert_array_equal(inflow.data("T1w"), none.data("T1w"))
    records = [r for r in inflow.truth["scanner"]["scans"]["FLAIR"]["artefacts"] if r["kind"] == "csf_inflow"]
    assert records
    shape = none.image("FLAIR").shape
    sites = np.any([_weight(r, flair_voxels) > 0 for r in records], axis=0).reshape(shape)
    near = ndi.binary_dilation(sites, iterations=2)  # the scan's trilinear sampling reaches a voxel further
    np.testing.assert_array_equal(inflow.data("FLAIR")[~near], none.data("FLAIR")[~near])
    assert (inflow.data("FLAIR")[near] > none.data("FLAIR")[near] + 20).any()


def test_residual_nonuniformity_is_the_recorded_field(renders):
    for suffix in ("T1w", "FLAIR"):
        none, scanner = renders["none"].data(suffix), renders["scanner"].data(suffix)
        records = renders["scanner"].truth["scanner"]["scans"][suffix]["artefacts"]
        record = next(r for r in records if r["kind"] == "residual_nonuniformity")
        img = renders["none"].image(suffix)
        head = ndi.binary_erosion(none > 0.2 * np.percentile(none, 99), iterations=4)
        ijk = np.argwhere(head).T
        field = nonuniformity_at(record, img.affine[:3, :3] @ ijk + img.affine[:3, 3:4])
        # Smoothed over ~3 voxels, so that the scans' motion ringing averages out; the field is far smoother.
        ratio = (ndi.gaussian_filter(scanner, 3.0) / np.maximum(ndi.gaussian_filter(none, 3.0), 1.0))[head]
        assert np.median(np.abs(ratio / field - 1.0)) < 0.005
        varied = np.abs(field - 1.0) > 0.01
        assert varied.mean() > 0.05 and np.corrcoef(ratio[varied], field[varied])[0, 1] > 0.95


def test_motion_ringing_rings_along_the_phase_encoding_axis(renders):
    for suffix in ("T1w", "FLAIR"):
        records = renders["scanner"].truth["scanner"]["scans"][suffix]["artefacts"]
        ringing = next(r for r in records if r["kind"] == "motion_ringing")
        field_record = next(r for r in records if r["kind"] == "residual_nonuniformity")
        img = renders["none"].image(suffix)
        none, scanner = renders["none"].data(suffix), renders["scanner"].data(suffix)
        ijk = np.indices(none.shape).reshape(3, -1)
        field = nonuniformity_at(field_record, img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]).reshape(none.shape)
        residual = scanner - none * field  # what the ringing added
        rms = np.sqrt(np.mean(residual**2)) / np.sqrt(np.mean((none * field) ** 2))
        assert 0.5 * ringing["relative_rms"] < rms < 1.6 * ringing["relative_rms"], (rms, ringing)
        axis = ringing["phase_axis"]
        energy = [np.mean(np.diff(residual, axis=a) ** 2) for a in range(3)]
        assert energy[axis] > 2.0 * max(e for a, e in enumerate(energy) if a != axis), energy


def test_field_strength_changes_contrast_noise_and_the_sidecar(renders):
    none, field = renders["none"], renders["field"]
    assert none.truth["scanner"]["field_strength_t"] == 3.0 and field.truth["scanner"]["field_strength_t"] == 1.5
    pid = none.truth["participant_id"]
    for render, tesla in ((none, 3), (field, 1.5)):
        meta = json.loads((render.bids / pid / "anat" / f"{pid}_acq-{render.truth['plan']['flair_acq']}_FLAIR.json"
                           ).read_text())
        assert meta["MagneticFieldStrength"] == tesla
    voxels = _template_voxels(none, "FLAIR")
    gm, wm = _prior("gm", voxels) > 0.9, _prior("wm", voxels) > 0.95
    contrast = {}
    noise = {}
    for name, render in (("3", none), ("1.5", field)):
        data = render.data("FLAIR").ravel()
        contrast[name] = np.median(data[gm]) / np.median(data[wm])
        corner = render.data("FLAIR")[:12, :12, :12]  # air, outside the head: Rayleigh noise
        noise[name] = corner.mean() / np.median(data[wm])
    # Longer T1 relaxation at 3 T flattens FLAIR grey-white contrast (nominal 1.22 at 3 T, 1.36 at 1.5 T).
    assert 1.05 < contrast["1.5"] / contrast["3"] < 1.2, contrast
    assert 1.35 < noise["1.5"] / noise["3"] < 2.2, noise


def test_a_faint_iia_at_1p5t_lands_at_its_intended_contrast(tmp_path):
    """A small faint IIa in the insula at 1.5 T, where grey–white contrast is higher than at 3 T: thickened
    cortex alone made it 1.07 against an intended 1.04; it must measure (as the benchmark does, from the
    written FLAIR and mask) in the faint stratum and within 0.015 of what was intended."""
    realism = only(("field_strength",), always=("field_strength",))
    plan = plan_dataset(2, 1, seed=SEED, realism=realism)[PATIENT]
    spec = replace(plan.lesion, lobes=("IL",), radius_mm=radius_mm(0.5), volume_cm3=0.5, flair_ratio=1.04,
                   transmantle=False)
    plan = replace(plan, histopathology="FCD IIa", lesion=spec)
    assert plan.field_strength_t == 1.5
    render = Render(render_subject(plan, SEED, tmp_path / "bids", tmp_path / "truth"), tmp_path / "bids",
                    tmp_path / "truth")
    measured = lesion_contrast(render.data("FLAIR_roi") > 0, render.data("FLAIR"))
    assert measured < 1.10 and measured == pytest.approx(1.04, abs=0.015), measured


def test_every_tissue_has_a_stated_relaxation_at_1p5t():
    """T1 at 1.5 over 3 T as measured (MAGMA 2008;21:121: GM 1197 / 1607 ms, WM 646 / 838 ms); a tissue
    without a stated factor is an error, not silently grey matter."""
    at3, at15 = realistic_tissues(TISSUES, 3.0), realistic_tissues(TISSUES, 1.5)
    assert at15["gm"].t1_ms / at3["gm"].t1_ms == pytest.approx(1197 / 1607, abs=0.002)
    assert at15["wm"].t1_ms / at3["wm"].t1_ms == pytest.approx(646 / 838, abs=0.002)
    assert at15["csf"].t1_ms == at3["csf"].t1_ms
    with pytest.raises(KeyError):
        realistic_tissues({**TISSUES, "mystery": Tissue(1000.0, 100.0, 0.8)}, 1.5)


def test_normal_variants_leave_a_lesion_and_its_shell_alone():
    """A 6 mm lesion forced into the left insula, every variant forced: no tissue within 6 mm of the lesion
    (the contrast shell reaches 4 native voxels of at most 1.3 mm) changes, while the insula brightens.
    (Within 12 mm of the centre: the template's voxels are within 6 mm of the ball's continuous surface.)"""
    priors = load_tissue_priors()
    maps = TissueMaps.from_priors(priors)
    insula = anatomy.limbic_cortex()[("insula", "L")]
    peaks = np.argwhere(insula.weight == insula.weight.max()) + [b.start for b in insula.box]
    centre = peaks[np.argmin(np.linalg.norm(peaks - insula.center_vox(), axis=1))]
    box = tuple(slice(c - 14, c + 15) for c in centre)
    distance = np.linalg.norm(np.indices((29, 29, 29)) - 14, axis=0)
    maps.lesion_mask[box] = distance <= 6
    near = np.zeros(priors.gm.shape, bool)
    near[box] = distance <= 12  # within 6 mm of the lesion
    before = {name: getattr(maps, name)[near].copy() for name in ("gm", "wm", "csf")}
    add_normal_variants(maps, 0, 0, VARIANTS_DRAWN, VARIANTS_DRAWN, 3.0, 60, True)
    for name, values in before.items():
        np.testing.assert_array_equal(getattr(maps, name)[near], values)
    assert all(not fraction[near[patch_box]].any() for _, patch_box, fraction in maps.patches)
    insula_patch = next(f for name, b, f in maps.patches if name == "cortex_long_t2" and b == insula.box)
    assert insula_patch.max() > 0.2


def test_the_field_strength_thins_the_white_matter_foci_without_moving_them():
    """At 1.5 T fewer foci show (about 0.6 as many: AJNR 2009;30:911), and those that do are foci of 3 T."""
    priors = load_tissue_priors()
    counts = {3.0: 0, 1.5: 0}
    for index in range(12):
        centres = {}
        for tesla in counts:
            records = add_normal_variants(TissueMaps.from_priors(priors), 1, index, ("punctate_wmh",), (), tesla,
                                          60, False)
            centres[tesla] = {tuple(r["center_template_mm"]) for r in records}
            counts[tesla] += len(records)
        assert centres[1.5] <= centres[3.0], index
    assert counts[3.0] > 30 and 0.35 < counts[1.5] / counts[3.0] < 0.85, counts


# What the generator wrote before the realistic phantom (commit a30615b), for every subject of the tiny plan
# (seed 7: a patient, a control, a transmantle patient with a thick 2D FLAIR) and a patient with caps (seed 12):
# sha256 (16 hex digits) of each image's voxels and affine, of each sidecar (without SoftwareVersions, the
# installed package's version), of truth["lesion"] and of the rest of the truth but the plan (its fields grew).
# Computed by rendering the same plans with the code of a30615b; any change to a legacy image fails here.
LEGACY_DIGESTS = {
    (7, 0): {
        "sub-00001_acq-T2sel_FLAIR.json": "ef2c4de6221b9fa7",
        "sub-00001_acq-T2sel_FLAIR.nii.gz": "c919b41b2b7a6918",
        "sub-00001_acq-sag111_T1w.json": "b82551c9e0e67d05",
        "sub-00001_acq-sag111_T1w.nii.gz": "e9a5f7fda8c3f6ac",
        "sub-00001_acq-tse3dvfl_FLAIR_roi.nii.gz": "4cb314f4a78b08fd",
        "truth.lesion": "a1713ad5f76791cc",
        "truth.other": "04ae65cb75635e2c",
    },
    (7, 1): {
        "sub-00002_acq-T2sel_FLAIR.json": "ef2c4de6221b9fa7",
        "sub-00002_acq-T2sel_FLAIR.nii.gz": "d1478e701c14a9b9",
        "sub-00002_acq-iso08_T1w.json": "027221a6c32859ce",
        "sub-00002_acq-iso08_T1w.nii.gz": "46bea655e4035650",
        "truth.lesion": "74234e98afe7498f",
        "truth.other": "4263e316da362987",
    },
    (7, 2): {
        "sub-00003_acq-sag111_T1w.json": "b82551c9e0e67d05",
        "sub-00003_acq-sag111_T1w.nii.gz": "cac2671515b2bf7b",
        "sub-00003_acq-tra4mm_FLAIR.json": "0ef7aacb34601915",
        "sub-00003_acq-tra4mm_FLAIR.nii.gz": "105645020e3e21dd",
        "sub-00003_acq-tse3dvfl_FLAIR.json": "7584c62ca8f57b29",
        "sub-00003_acq-tse3dvfl_FLAIR.nii.gz": "9275b54e6e6a96db",
        "sub-00003_acq-tse3dvfl_FLAIR_roi.nii.gz": "b928a352dd25d7ce",
        "truth.lesion": "05b91689a6384227",
        "truth.other": "649a3408acea2f0e",
    },
    (12, 0): {
        "sub-00001_acq-T2sel_FLAIR.json": "ef2c4de6221b9fa7",
        "sub-00001_acq-T2sel_FLAIR.nii.gz": "833af0c1c5029607",
        "sub-00001_acq-iso08_T1w.json": "027221a6c32859ce",
        "sub-00001_acq-iso08_T1w.nii.gz": "8d4cef3600908b2d",
        "sub-00001_acq-tse3dvfl_FLAIR_roi.nii.gz": "20cfface7f01b0e3",
        "truth.lesion": "21d4e260e141a6a4",
        "truth.other": "9027337eced7e7dc",
    },
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _legacy_digests(truth: dict, anat_root: Path) -> dict[str, str]:
    """The digests of one rendered subject, keyed as in LEGACY_DIGESTS."""
    out = {}
    for path in sorted(anat_root.rglob("*")):
        if path.name.endswith(".nii.gz"):
            img = nib.load(path)
            out[path.name] = _digest(np.ascontiguousarray(np.asarray(img.dataobj)).tobytes()
                                     + np.asarray(img.affine, "<f8").tobytes())
        elif path.suffix == ".json":
            meta = json.loads(path.read_text())
            assert meta.pop("SoftwareVersions") == __version__
            out[path.name] = _digest(json.dumps(meta, sort_keys=True).encode())
    out["truth.lesion"] = _digest(json.dumps(truth.get("lesion"), sort_keys=True).encode())
    rest = {k: v for k, v in truth.items() if k not in ("plan", "lesion")}
    out["truth.other"] = _digest(json.dumps(rest, sort_keys=True).encode())
    return out


@pytest.mark.parametrize("seed, index", LEGACY_DIGESTS)
def test_legacy_setting_gives_the_old_images_exactly(tmp_path, seed, index):
    plan = plan_dataset(2, 1, seed=seed, realism=LEGACY)[index]
    truth = render_subject(plan, seed, tmp_path / "bids", tmp_path / "truth")
    assert _legacy_digests(truth, tmp_path / "bids" / plan.participant_id) == LEGACY_DIGESTS[(seed, index)]
