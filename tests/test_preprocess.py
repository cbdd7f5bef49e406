"""Registration accuracy, the template grid, and the native <-> template round trip."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pseudohealthy.config import load_config
from pseudohealthy.data.bids import build_inventory
from pseudohealthy.data.preprocess import (
    Normalisation,
    fit_normalisation,
    load_meta,
    looks_skull_stripped,
    preprocess_subject,
    template_to_native,
)
from pseudohealthy.data.registration import n4_correct, register_rigid, rotation_angle_deg
from pseudohealthy.data.sitk_io import from_sitk, nib_to_sitk, ras_to_lps_matrix, to_sitk
from pseudohealthy.templates.grid import template_grid


def test_sitk_conversion_keeps_voxels_and_geometry(tiny_bids):
    path = next(tiny_bids.glob("sub-*/anat/*_T1w.nii.gz"))
    img = nib.load(path)
    data, affine = from_sitk(nib_to_sitk(img))
    np.testing.assert_allclose(affine, img.affine, atol=1e-5)
    np.testing.assert_array_equal(data, np.asarray(img.dataobj, dtype=np.float32))
    read = sitk.ReadImage(str(path))  # SimpleITK's own reader agrees on the physical frame
    np.testing.assert_allclose(read.GetOrigin(), nib_to_sitk(img).GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(read.GetDirection(), nib_to_sitk(img).GetDirection(), atol=1e-5)


def test_rigid_registration_recovers_the_known_motion(tiny_bids, tiny_phantom):
    subject = tiny_phantom["subjects"][0]
    chosen = build_inventory(tiny_bids, [subject["participant_id"]]).subjects[0]
    t1 = n4_correct(sitk.ReadImage(str(chosen.t1w), sitk.sitkFloat32))
    flair = n4_correct(sitk.ReadImage(str(chosen.flair), sitk.sitkFloat32))
    est = register_rigid(flair, t1)  # FLAIR points -> T1 points (LPS)
    motion = np.asarray(subject["geometry"]["t1w_world_to_flair_world"])
    truth = ras_to_lps_matrix(np.linalg.inv(motion))
    rot = np.asarray(est.GetMatrix()).reshape(3, 3)
    center, shift = np.asarray(est.GetCenter()), np.asarray(est.GetTranslation())
    assert rotation_angle_deg(np.eye(3), truth[:3, :3]) > 0.5  # there was something to recover
    assert rotation_angle_deg(rot, truth[:3, :3]) < 1.0
    points = center[:, None] + np.random.default_rng(0).uniform(-60, 60, (3, 200))  # a head-sized box
    moved = rot @ (points - center[:, None]) + (center + shift)[:, None]
    error = np.linalg.norm(moved - (truth[:3, :3] @ points + truth[:3, 3:4]), axis=0)
    assert error.max() < 1.0


def test_template_grid_is_axial_and_centred():
    shape, affine = template_grid(3.0, 64)
    assert shape[:2] == (64, 64)
    np.testing.assert_allclose(np.diag(affine)[:3], 3.0)
    center = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    assert np.all(np.abs(center - np.array([0, -18, 10])) < 15)  # the MNI brain's centre


def test_normalisation_range_and_inverse():
    norm = Normalisation(10.0, 110.0)
    x = np.array([0.0, 10.0, 60.0, 110.0, 500.0])
    brain = np.array([True, True, True, True, False])
    np.testing.assert_allclose(norm.apply(x, brain), [-1, -1, 0, 1, -1])
    np.testing.assert_allclose(norm.invert(np.array([-1.0, 0.0, 1.0])), [10, 60, 110])


def _hand_made_brain(lesion_value: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 40³ "brain" of grey matter (100), white matter (70) and CSF (30) with noise (SD 3), and a 4³
    "lesion" (0.1 % of the brain) at ``lesion_value``; returns (volume, brain, grey matter, lesion)."""
    rng = np.random.default_rng(0)
    tissue = rng.choice([100.0, 70.0, 30.0], size=(40, 40, 40), p=[0.45, 0.45, 0.10])
    lesion = np.zeros(tissue.shape, bool)
    lesion[18:22, 18:22, 18:22] = True
    volume = np.where(lesion, lesion_value, tissue) + rng.normal(0, 3, tissue.shape)
    return volume, np.ones(tissue.shape, bool), (tissue == 100.0) & ~lesion, lesion


@pytest.mark.parametrize("intensity_max", [1.0, 3.0])
def test_the_bright_tail_survives_normalisation_unless_clipped(intensity_max):
    """A lesion 30 % brighter than grey matter keeps >= 90 % of its contrast with the tail kept; clipping at
    the 99.5th percentile (intensity_max 1, the old range) leaves less than half of it."""
    volume, brain, grey, lesion = _hand_made_brain(130.0)
    cfg = load_config("quick", overrides={"data": {"intensity_max": intensity_max}}).data
    norm = fit_normalisation(volume, brain, cfg)
    y = norm.apply(volume, brain)
    kept = (y[lesion].mean() - y[grey].mean()) / ((130.0 - 100.0) * 2 / (norm.hi - norm.lo))
    if intensity_max > 1:
        assert kept >= 0.9, kept
        np.testing.assert_allclose(norm.invert(y[lesion]), volume[lesion], rtol=1e-5)  # nothing clipped
    else:
        assert kept < 0.5, kept
        assert y.max() == 1.0


def test_the_normalised_range_has_a_ceiling():
    volume, brain, _, lesion = _hand_made_brain(10_000.0)  # an artefact far above everything
    y = fit_normalisation(volume, brain, load_config("quick", overrides={"data": {"intensity_max": 3.0}}).data
                          ).apply(volume, brain)
    assert y.max() == 3.0 and y.min() == -1.0 and np.all(y[lesion] == 3.0)


def _bright_neighbours(volume: np.ndarray, region: np.ndarray, inner: int, outer: int) -> float:
    """Median of the brighter half of a shell ``inner``..``outer`` voxels around ``region``: its grey matter,
    on FLAIR (the brighter of the two tissues a cortical lesion borders)."""
    from scipy import ndimage as ndi

    shell = ndi.binary_dilation(region, iterations=outer) & ~ndi.binary_dilation(region, iterations=inner)
    values = volume[shell]
    return float(np.median(values[values > np.median(values)]))


def test_a_lesion_30_percent_brighter_than_grey_matter_keeps_its_contrast_through_prepare(tiny_bids, tiny_phantom,
                                                                                         tmp_path):
    """Through the whole of ``prepare`` (N4, registration, resampling, normalisation) with the tail kept:
    a lesion painted at 1.3 times its neighbouring grey matter keeps >= 90 % of that contrast."""
    from helpers import copy_dataset
    from scipy import ndimage as ndi

    patient = max((s for s in tiny_phantom["subjects"] if s["group"] == "fcd"), key=lambda s: s["lesion"]["volume_mm3"])
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    inputs = build_inventory(bids, [patient["participant_id"]]).subjects[0]
    flair_img, mask = nib.load(inputs.flair), np.asarray(nib.load(inputs.lesion_mask).dataobj) > 0
    flair = np.asarray(flair_img.dataobj, np.float32)
    flair[mask] = 1.3 * _bright_neighbours(flair, mask, 2, 4)
    nib.save(nib.Nifti1Image(flair, flair_img.affine, flair_img.header), inputs.flair)

    cfg = load_config("quick", overrides={"data": {"template_voxel_mm": 1.5, "image_size": 128,
                                                   "intensity_max": 3.0}}).data
    meta = preprocess_subject(inputs, cfg, tmp_path / "out")
    norm = Normalisation(**meta["normalisation"]["flair"])
    prepared = norm.invert(np.asarray(nib.load(tmp_path / "out" / "flair.nii.gz").dataobj))  # scanner units
    lesion = np.asarray(nib.load(tmp_path / "out" / "lesion.nii.gz").dataobj) > 0.5
    core = ndi.binary_erosion(lesion, iterations=1)
    contrast = np.median(prepared[core]) / _bright_neighbours(prepared, lesion, 2, 4) - 1
    assert contrast >= 0.9 * 0.3, contrast


def test_skull_stripped_detection():
    head = np.random.default_rng(0).uniform(1, 2, (100, 100, 100))
    stripped = np.zeros_like(head)
    stripped[30:70, 30:70, 30:70] = 1
    assert not looks_skull_stripped(head, 1.0)
    assert looks_skull_stripped(stripped, 1.0)


@pytest.fixture(scope="module")
def fine_patient(tiny_bids, tiny_phantom, tmp_path_factory):
    """The largest-lesion patient preprocessed on a 1.5 mm grid."""
    patient = max((s for s in tiny_phantom["subjects"] if s["group"] == "fcd"),
                  key=lambda s: s["lesion"]["volume_mm3"])
    inputs = build_inventory(tiny_bids, [patient["participant_id"]]).subjects[0]
    cfg = load_config("quick", overrides={"data": {"template_voxel_mm": 1.5, "image_size": 128}}).data
    out = tmp_path_factory.mktemp("fine") / patient["participant_id"]
    preprocess_subject(inputs, cfg, out)
    return inputs, out


def test_preprocessed_volumes(fine_patient):
    inputs, out = fine_patient
    meta = load_meta(out)
    shape = tuple(meta["template_grid"]["shape"])
    for name in ("t1", "flair", "brain", "lesion", "lobe"):
        img = nib.load(out / f"{name}.nii.gz")
        assert img.shape == shape
        np.testing.assert_allclose(img.affine, meta["template_grid"]["affine"])
    flair = np.asarray(nib.load(out / "flair.nii.gz").dataobj)
    brain = np.asarray(nib.load(out / "brain.nii.gz").dataobj) > 0
    assert flair.min() >= -1 and flair.max() <= 1 and np.all(flair[~brain] == -1)
    lesion = np.asarray(nib.load(out / "lesion.nii.gz").dataobj) > 0.5
    assert lesion.any() and brain[lesion].mean() > 0.95
    assert meta["label"] == inputs.label and meta["inputs"]["flair"] == str(inputs.flair)


def test_lesion_mask_native_template_native_round_trip(fine_patient):
    inputs, out = fine_patient
    native = nib.load(inputs.lesion_mask)
    original = np.asarray(native.dataobj) > 0
    template = np.asarray(nib.load(out / "lesion.nii.gz").dataobj)
    back = template_to_native(template, out)
    np.testing.assert_allclose(back.affine, native.affine)
    assert back.shape == native.shape
    restored = np.asarray(back.dataobj) > 0.5
    dice = 2 * (restored & original).sum() / (restored.sum() + original.sum())
    assert dice >= 0.9, dice


def test_template_to_native_rejects_wrong_shapes(fine_patient):
    _, out = fine_patient
    with pytest.raises(ValueError, match="not the template grid"):
        template_to_native(np.zeros((3, 3, 3), np.float32), out)


def test_to_sitk_round_trip_of_an_oblique_grid():
    affine = np.array([[0, 0, -1.2, 90], [0.9, 0.1, 0, -100], [0, 1.1, 0.05, -60], [0, 0, 0, 1]], float)
    data = np.random.default_rng(1).random((5, 6, 7)).astype(np.float32)
    back, back_affine = from_sitk(to_sitk(data, affine))
    np.testing.assert_allclose(back_affine, affine, atol=1e-6)
    np.testing.assert_array_equal(back, data)



def test_a_provided_brain_mask_is_used(tiny_bids, tiny_phantom, tmp_path):
    from helpers import copy_dataset

    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    pid = next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "hc")
    flair_path = build_inventory(bids, [pid]).subjects[0].flair
    flair = nib.load(flair_path)
    box = np.zeros(flair.shape, np.uint8)
    box[tuple(slice(s // 4, 3 * s // 4) for s in flair.shape)] = 1  # a central box: clearly not a brain
    nib.save(nib.Nifti1Image(box, flair.affine), flair_path.parent / f"{pid}_desc-brain_mask.nii.gz")
    inputs = build_inventory(bids, [pid]).subjects[0]
    assert inputs.brain_mask is not None and any("provided brain mask" in n for n in inputs.notes)
    cfg = load_config("quick").data
    meta = preprocess_subject(inputs, cfg, tmp_path / "out")
    assert meta["brain_mask"].startswith("provided")
    brain = np.asarray(nib.load(tmp_path / "out" / "brain.nii.gz").dataobj) > 0
    box_ml = box.sum() * abs(np.linalg.det(flair.affine[:3, :3])) / 1000
    brain_ml = brain.sum() * cfg.template_voxel_mm**3 / 1000
    assert abs(brain_ml - box_ml) / box_ml < 0.25  # the box, not the ~1.9 l MNI brain


def test_brain_mask_source_is_read_from_the_field_or_from_an_older_description():
    """meta.json names the mask's source; units prepared before that field say it only in words."""
    from pseudohealthy.data.preprocess import brain_mask_source
    from pseudohealthy.detect.derivatives import brain_extracted

    older = {"provided (sub-01_desc-brain_mask.nii.gz)": "provided", "input nonzero (skull-stripped)": "nonzero",
             "deepbet on the T1w": "deepbet", "MNI152 template mask": "template"}
    for description, source in older.items():
        assert brain_mask_source({"brain_mask": description}) == source
        assert brain_mask_source({"brain_mask": description, "brain_mask_source": source}) == source
        assert brain_extracted(source) is (source != "template")
    with pytest.raises(ValueError, match="not a description"):
        brain_mask_source({"brain_mask": "a mask from elsewhere"})


def test_prepare_writes_the_brain_mask_source_beside_its_description(tiny_prepared):
    from pseudohealthy.data.preprocess import brain_mask_source

    metas = [load_meta(unit) for unit in sorted((tiny_prepared / "subjects").iterdir())]
    assert metas and all(meta["brain_mask_source"] == brain_mask_source({"brain_mask": meta["brain_mask"]})
                         for meta in metas)


def test_prepare_turns_the_normative_residual_off_where_fewer_than_two_controls_train(tiny_bids, tiny_prepared,
                                                                                       tmp_path):
    """The quick preset z-scores against the training controls; the tiny dataset trains on one, so prepare
    writes the config without it and says why (calibrate would otherwise stop with an error)."""
    import shutil

    from pseudohealthy.config import load_work_config
    from pseudohealthy.data.prepare import prepare
    from pseudohealthy.data.splits import read_splits

    assert load_config("quick").method.normative
    assert sum(group == "hc" and role == "train" for _, group, role in read_splits(tiny_prepared)) == 1
    assert not load_work_config(tiny_prepared).method.normative
    work = tmp_path / "work"
    shutil.copytree(tiny_prepared, work)
    result = prepare(tiny_bids, work, load_config("quick"), jobs=1)  # every unit reused
    assert not result.processed and not load_work_config(work).method.normative
    assert len(result.notes) == 1 and "method.normative is off" in result.notes[0] and "has 1" in result.notes[0]


@pytest.mark.slow
def test_nonlinear_registration_runs_and_round_trips(tiny_bids, tiny_phantom, tmp_path):
    patient = max((s for s in tiny_phantom["subjects"] if s["group"] == "fcd"), key=lambda s: s["lesion"]["volume_mm3"])
    inputs = build_inventory(tiny_bids, [patient["participant_id"]]).subjects[0]
    cfg = load_config("quick", overrides={"data": {"template_voxel_mm": 1.5, "image_size": 128,
                                                   "nonlinear_registration": True}}).data
    preprocess_subject(inputs, cfg, tmp_path / "out")
    original = np.asarray(nib.load(inputs.lesion_mask).dataobj) > 0
    back = np.asarray(template_to_native(np.asarray(nib.load(tmp_path / "out" / "lesion.nii.gz").dataobj),
                                         tmp_path / "out").dataobj) > 0.5
    assert 2 * (back & original).sum() / (back.sum() + original.sum()) > 0.8


def test_native_points_map_to_mni_near_the_phantoms_truth(fine_patient, tiny_phantom):
    """The lesion's native centroid carried to MNI152 lands near where the phantom put it in template
    space (the phantom also deforms anatomy non-linearly, which an affine registration does not undo);
    and the registered T1w lands on the FLAIR grid."""
    from pseudohealthy.data.preprocess import NativeMapper

    inputs, out = fine_patient
    truth = next(s for s in tiny_phantom["subjects"] if s["participant_id"] == inputs.participant_id)
    native = nib.load(inputs.lesion_mask)
    centroid = native.affine[:3, :3] @ np.argwhere(np.asarray(native.dataobj) > 0).mean(axis=0) + native.affine[:3, 3]
    mapper = NativeMapper(out)
    mni = np.array(mapper.template_mm(centroid))
    assert np.linalg.norm(mni - np.array(truth["lesion"]["center_template_mm"])) < 10.0
    t1 = mapper.t1_on_flair_grid(out, inputs.t1w)
    assert t1.shape == native.shape and np.allclose(t1.affine, native.affine)
    assert np.asarray(t1.dataobj)[np.asarray(native.dataobj) > 0].mean() > 0  # T1 signal where the lesion is


def test_learned_brain_mask_matches_the_phantoms_true_brain(fine_patient, tiny_phantom, tmp_path):
    """deepbet on the whole-head T1w, carried to the FLAIR grid, against the phantom's true brain; and
    ``data.brain_mask: deepbet`` uses it in preprocessing."""
    from pseudohealthy.data.preprocess import learned_brain_mask, t1_mask_on_flair_grid
    from pseudohealthy.phantom.readback import true_brain_mask

    inputs, out = fine_patient
    truth = next(s for s in tiny_phantom["subjects"] if s["participant_id"] == inputs.participant_id)
    flair = nib.load(inputs.flair)
    reference = true_brain_mask(truth, Path(tiny_phantom["truth_dir"]), flair)
    learned = t1_mask_on_flair_grid(out, learned_brain_mask(nib.load(inputs.t1w)), flair)
    dice = 2 * (learned & reference).sum() / (learned.sum() + reference.sum())
    assert dice >= 0.9, dice
    cfg = load_config("quick", overrides={"data": {"brain_mask": "deepbet"}}).data
    meta = preprocess_subject(inputs, cfg, tmp_path / inputs.participant_id)
    assert meta["brain_mask"] == "deepbet on the T1w"
    brain = np.asarray(nib.load(tmp_path / inputs.participant_id / "brain.nii.gz").dataobj) > 0
    shape, _ = template_grid(cfg.template_voxel_mm, cfg.image_size)
    true_ml = reference.sum() * abs(np.linalg.det(flair.affine[:3, :3])) / 1000
    assert brain.shape == shape and abs(brain.sum() * cfg.template_voxel_mm ** 3 / 1000 / true_ml - 1) < 0.15
