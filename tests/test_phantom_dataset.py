"""The generated dataset: layout, quirks, geometry, lesions and determinism."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from pseudohealthy.phantom.dataset import plan_dataset
from pseudohealthy.phantom.readback import flair_world_to_template_mm
from pseudohealthy.phantom.subject import render_subject
from pseudohealthy.templates.lobes import HEMISPHERE_CODES, LOBE_CODES, load_lobe_atlas
from pseudohealthy.templates.mni import load_tissue_priors


def _files(bids: Path, subject: dict) -> dict[str, Path]:
    pid, plan = subject["participant_id"], subject["plan"]
    anat = bids / pid / "anat"
    out = {"t1": anat / f"{pid}_acq-{plan['t1_acq']}_T1w.nii.gz",
           "flair": anat / f"{pid}_acq-{plan['flair_acq']}_FLAIR.nii.gz"}
    if plan["mask_acq"]:
        out["mask"] = anat / f"{pid}_acq-{plan['mask_acq']}_FLAIR_roi.nii.gz"
    if plan["thick_flair_acq"]:
        out["thick"] = anat / f"{pid}_acq-{plan['thick_flair_acq']}_FLAIR.nii.gz"
    return out


def _patients(truth: dict) -> list[dict]:
    return [s for s in truth["subjects"] if s["group"] == "fcd"]


def test_top_level_files_and_participants_quirks(tiny_bids, tiny_phantom):
    for name in ("dataset_description.json", "README", "CHANGES", "participants.json", ".bidsignore"):
        assert (tiny_bids / name).is_file(), name
    raw = (tiny_bids / "participants.tsv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw and b"n/a" in raw
    header = raw.decode("utf-8-sig").splitlines()[0].split("\t")
    assert {"participant_id", "group", "lobe", "hemisphere", "histopathology", "split"} <= set(header)
    assert "_roi.nii.gz" in (tiny_bids / ".bidsignore").read_text()
    ids = sorted(p.name for p in tiny_bids.glob("sub-*"))
    assert ids == [s["participant_id"] for s in tiny_phantom["subjects"]]


def test_every_planned_file_exists_with_a_sidecar(tiny_bids, tiny_phantom):
    for subject in tiny_phantom["subjects"]:
        for kind, path in _files(tiny_bids, subject).items():
            assert path.is_file(), path
            if kind != "mask":
                meta = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
                assert meta["RepetitionTime"] > 0


def test_grids_orientations_and_masks(tiny_bids, tiny_phantom):
    patients = _patients(tiny_phantom)
    assert any(s["plan"]["mask_acq"] != s["plan"]["flair_acq"] for s in patients)
    for subject in tiny_phantom["subjects"]:
        files = _files(tiny_bids, subject)
        t1, flair = nib.load(files["t1"]), nib.load(files["flair"])
        assert t1.ndim == 3 and flair.ndim == 3
        assert not np.allclose(t1.affine, flair.affine)  # different grids, not co-registered
        if "mask" in files:  # found by pattern even when its acq label differs: it is on the FLAIR grid
            mask = nib.load(files["mask"])
            assert mask.shape == flair.shape and np.allclose(mask.affine, flair.affine)
            values = np.unique(np.asarray(mask.dataobj))
            assert set(values.tolist()) == {0, 1}
        if "thick" in files:
            zooms = nib.load(files["thick"]).header.get_zooms()
            assert max(zooms) >= 3.0  # thick-slice 2D FLAIR
    orientations = {nib.aff2axcodes(nib.load(_files(tiny_bids, s)[k]).affine)
                    for s in tiny_phantom["subjects"] for k in ("t1", "flair")}
    assert len(orientations) >= 2


def test_heads_are_not_skull_stripped(tiny_bids, tiny_phantom):
    brain_ml = load_tissue_priors().brain.sum() / 1000.0
    for subject in tiny_phantom["subjects"]:
        img = nib.load(_files(tiny_bids, subject)["t1"])
        data = np.asarray(img.dataobj, dtype=np.float32)
        foreground = ndi.binary_fill_holes(data > 0.15 * np.percentile(data, 99))
        volume_ml = foreground.sum() * abs(np.linalg.det(img.affine[:3, :3])) / 1000.0
        scale = np.prod(subject["geometry"]["scale"])
        assert volume_ml > 1.3 * brain_ml * scale  # scalp and skull shells around the brain


def test_lesions_lie_in_brain_on_the_stated_lobe_and_hemisphere(tiny_bids, tiny_phantom):
    priors, atlas = load_tissue_priors(), load_lobe_atlas()
    inv_template = np.linalg.inv(priors.affine)
    lines = (tiny_bids / "participants.tsv").read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split("\t")
    rows = {line.split("\t")[0]: dict(zip(header, line.rstrip("\r").split("\t"))) for line in lines[1:]}
    for subject in _patients(tiny_phantom):
        mask_img = nib.load(_files(tiny_bids, subject)["mask"])
        ijk = np.argwhere(np.asarray(mask_img.dataobj) > 0).T.astype(np.float64)
        world = mask_img.affine[:3, :3] @ ijk + mask_img.affine[:3, 3:4]
        tmpl = flair_world_to_template_mm(subject, Path(tiny_phantom["truth_dir"]))(world)
        vox = np.rint(inv_template[:3, :3] @ tmpl + inv_template[:3, 3:4]).astype(int)
        vox = tuple(np.clip(vox[k], 0, priors.brain.shape[k] - 1) for k in range(3))
        assert priors.brain[vox].mean() > 0.97
        hemisphere, lobe = rows[subject["participant_id"]]["hemisphere"], rows[subject["participant_id"]]["lobe"]
        lobes = lobe.split(",")
        lobe_hits = atlas.lobe[vox]
        in_stated = np.isin(lobe_hits, [LOBE_CODES[name] for name in lobes]).mean()
        assert in_stated > 0.75, (subject["participant_id"], lobe, np.bincount(lobe_hits))
        for name in lobes:  # a lesion across two lobes touches both
            assert (lobe_hits == LOBE_CODES[name]).mean() > 0.02
        assert (atlas.hemisphere[vox] == HEMISPHERE_CODES[hemisphere]).mean() > 0.9


def _head_mask(data: np.ndarray) -> np.ndarray:
    return ndi.binary_fill_holes(data > 0.15 * np.percentile(data, 99))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_t1_and_flair_align_after_undoing_the_known_motion(tiny_bids, tiny_phantom):
    subject = tiny_phantom["subjects"][0]
    files = _files(tiny_bids, subject)
    t1, flair = nib.load(files["t1"]), nib.load(files["flair"])
    motion = np.asarray(subject["geometry"]["t1w_world_to_flair_world"])
    t1_head = _head_mask(np.asarray(t1.dataobj, dtype=np.float32)).astype(np.float32)
    flair_head = _head_mask(np.asarray(flair.dataobj, dtype=np.float32))

    def t1_head_on_flair_grid(flair_to_t1_world: np.ndarray) -> np.ndarray:
        vox2vox = np.linalg.inv(t1.affine) @ flair_to_t1_world @ flair.affine
        return ndi.affine_transform(t1_head, vox2vox, output_shape=flair.shape, order=1) > 0.5

    aligned = _dice(t1_head_on_flair_grid(np.linalg.inv(motion)), flair_head)
    unaligned = _dice(t1_head_on_flair_grid(np.eye(4)), flair_head)
    assert aligned > 0.97
    assert aligned > unaligned


def test_same_seed_same_arrays_other_seed_other_arrays(tmp_path):
    plan = next(p for p in plan_dataset(2, 0, seed=5) if p.thick_flair_acq is None)
    outs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        render_subject(plan, seed, tmp_path / name, tmp_path / f"{name}_truth")
        anat = tmp_path / name / plan.participant_id / "anat"
        outs[name] = {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(anat.glob("*.nii.gz"))}
    assert outs["a"].keys() == outs["b"].keys()
    for key in outs["a"]:
        np.testing.assert_array_equal(outs["a"][key], outs["b"][key])
    assert any(not np.array_equal(outs["a"][k], outs["c"][k]) for k in outs["a"])


def _validator() -> str:
    exe = shutil.which("bids-validator-deno") or str(Path(sys.executable).with_name("bids-validator-deno"))
    if not Path(exe).exists():
        pytest.fail("bids-validator-deno is not installed; install the test extras: pip install -e '.[test]'")
    return exe


def test_bids_validator_reports_no_errors(tiny_bids):
    result = subprocess.run([_validator(), str(tiny_bids), "--format", "json"], capture_output=True, text=True,
                            timeout=300)
    report = json.loads(result.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors[:5]


def test_truth_records_every_confound_of_every_subject_and_sidecars_agree(tiny_bids, tiny_phantom):
    from pseudohealthy.phantom.realism import CONFOUNDS

    assert tiny_phantom["realism"]["mode"] == "realistic"
    assert tiny_phantom["realism"]["confounds"] == list(CONFOUNDS)
    for subject in tiny_phantom["subjects"]:
        kinds = [r["kind"] for r in subject["normal_variants"]]
        assert kinds.count("regional_cortex") == 6 and kinds.count("corticospinal_tract") == 2
        assert {r["ventricle"] for r in subject["normal_variants"] if r["kind"] == "periventricular_band"} >= {
            "third", "fourth"}
        for r in subject["normal_variants"]:  # strength: the fraction of tissue changed at the peak
            assert len(r["center_template_mm"]) == 3 and len(r["center_flair_world_mm"]) == 3
            assert 0 < r["strength"] <= 1, r
        scanner, plan = subject["scanner"], subject["plan"]
        assert scanner["field_strength_t"] == plan["field_strength_t"]
        expected = {"T1w", "FLAIR"} | ({"FLAIR_thick"} if plan["thick_flair_acq"] else set())
        assert set(scanner["scans"]) == expected
        for scan in scanner["scans"].values():
            assert any(r["kind"] == "residual_nonuniformity" for r in scan["artefacts"])
        for path in _files(tiny_bids, subject).values():
            sidecar = path.with_name(path.name.replace(".nii.gz", ".json"))
            if sidecar.exists():
                assert json.loads(sidecar.read_text())["MagneticFieldStrength"] == plan["field_strength_t"]
    for subject in _patients(tiny_phantom):
        lesion = subject["lesion"]
        assert lesion["flair_contrast_ratio"] == pytest.approx(lesion["intended_flair_ratio"], abs=0.03)


def test_confound_previews_are_pictures(tiny_phantom, tmp_path):
    from pseudohealthy.phantom.preview import confound_previews

    pngs = confound_previews(tiny_phantom, tmp_path)
    assert len(pngs) == len(tiny_phantom["subjects"])
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
