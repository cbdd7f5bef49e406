"""A tiny end-to-end run: train a few steps, calibrate, detect; derivatives in the subject's own space."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers import tree_digest
from pseudohealthy.anomaly.clusters import find_clusters
from pseudohealthy.anomaly.maps import anomaly_map, histogram_match, score_to_unit, standardise_slices
from pseudohealthy.config import load_config
from pseudohealthy.data.bids import build_inventory
from pseudohealthy.detect.run import detect
from pseudohealthy.errors import UserError


def test_calibration_is_stored(trained):
    cal = json.loads((trained / "calibration.json").read_text())
    assert cal["threshold"] > 0 and cal["chosen_on"] and cal["min_cluster_mm3"] >= 0
    assert cal["samples"] == 2


def test_detect_refuses_another_number_of_samples_than_calibrated(trained, tiny_bids, tmp_path):
    with pytest.raises(UserError, match="chosen for --samples 2, not 3"):
        detect(tiny_bids, tmp_path / "out", trained, samples=3)


def test_detect_writes_valid_derivatives_in_native_space(trained, tiny_bids, tiny_phantom, tmp_path):
    before = tree_digest(tiny_bids)
    out = tmp_path / "derivatives"
    patient = next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "fcd")
    results = detect(tiny_bids, out, trained, [patient])
    assert [r["participant_id"] for r in results] == [patient]
    flair = build_inventory(tiny_bids, [patient]).subjects[0].flair
    native = nib.load(flair)
    stem = flair.name.replace("_FLAIR.nii.gz", "")
    anat = out / patient / "anat"
    for suffix in ("desc-pseudohealthy_FLAIR", "label-FCD_desc-anomaly_probseg", "desc-clusters_dseg",
                   "desc-candidates_dseg", "desc-brain_mask", "label-FCD_desc-anomalyspread_probseg"):
        img = nib.load(anat / f"{stem}_{suffix}.nii.gz")
        assert img.shape == native.shape
        np.testing.assert_allclose(img.affine, native.affine, atol=1e-4)
        assert (anat / f"{stem}_{suffix}.json").is_file()
    score = np.asarray(nib.load(anat / f"{stem}_label-FCD_desc-anomaly_probseg.nii.gz").dataobj)
    assert 0 <= score.min() and score.max() <= 1
    spread = np.asarray(nib.load(anat / f"{stem}_label-FCD_desc-anomalyspread_probseg.nii.gz").dataobj)
    assert spread.min() >= 0 and spread.max() > 0  # two draws differ somewhere
    sidecar = json.loads((anat / f"{stem}_desc-clusters_dseg.json").read_text())
    assert sidecar["Samples"] == 2 and "confidence" in sidecar
    table = (anat / f"{stem}_desc-clusters_dseg.tsv").read_text().splitlines()
    header = table[0].split("\t")
    assert header[:3] == ["index", "name", "rank"] and header[-1] == "confidence"
    for row in table[1:]:
        assert float(row.split("\t")[-1]) in (0.0, 0.5, 1.0)  # k of 2 draws agree
    rows = [dict(zip(header, r.split("\t"))) for r in table[1:]]
    labels = {kind: np.asarray(nib.load(anat / f"{stem}_desc-{kind}_dseg.nii.gz").dataobj)
              for kind in ("clusters", "candidates")}
    assert 0 < sum(r["above_threshold"] == "false" for r in rows) <= 5  # the map always peaks somewhere
    voxel_mm3 = abs(np.linalg.det(native.affine[:3, :3]))
    min_mm3 = json.loads((trained / "calibration.json").read_text())["min_cluster_mm3"]
    for r in rows:  # each row's region is where its dseg says; a candidate is under the threshold, or above
        above = r["above_threshold"] == "true"  # it over less than the minimum cluster volume
        region = labels["clusters" if above else "candidates"] == int(r["index"])
        assert region.any() and (float(r["relative_peak"]) > 1 if above else
                                 (region & (score > 0.5)).sum() * voxel_mm3 < min_mm3)
        assert float(r["peak_score"]) == pytest.approx(score[region].max(), abs=1e-4)
        assert r["name"] == f"{'cluster' if above else 'candidate'}-{r['rank']}"
    assert (out / f"{patient}.html").is_file() and (out / "index.html").is_file()
    page = (out / f"{patient}.html").read_text()
    assert "<th>confidence</th>" in page and "Candidates below the threshold" in page
    assert "Neurological convention" in page and "trained on synthetic phantom data" in page
    views = sorted((out / patient / "figures").glob(f"{patient}_cluster-*.png"))
    if len(table) == 1:  # no cluster: one figure through the map's maximum instead
        views = [out / patient / "figures" / f"{patient}_maximum.png"]
    assert views and all(v.name in page and v.stat().st_size > 50_000 for v in views)
    assert "peak_mni_x" in header and all(len(r.split("\t")) == len(header) for r in table[1:])
    assert (out / patient / "figures" / f"{patient}_overlays.png").stat().st_size > 10_000
    qc = out / patient / "figures" / f"{patient}_qc.png"
    assert qc.stat().st_size > 10_000 and qc.name in page and "Quality control" in page
    pseudo_sidecar = json.loads((anat / f"{stem}_desc-pseudohealthy_FLAIR.json").read_text())
    assert pseudo_sidecar["BrainMaskSource"] in page
    # the phantom's heads are not skull-stripped: only a brain extraction may call the output skull-stripped
    expected = {"MNI152 template mask": False, "deepbet on the T1w": True}
    assert pseudo_sidecar["SkullStripped"] is expected[pseudo_sidecar["BrainMaskSource"]]
    assert tree_digest(tiny_bids) == before
    generated = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert "commit" in generated["Description"] and "sha256" in generated["Description"]
    assert "preset quick" in generated["Description"]  # which model made it

    validator = shutil.which("bids-validator-deno") or str(Path(sys.executable).with_name("bids-validator-deno"))
    report = json.loads(subprocess.run([validator, str(out), "--format", "json"], capture_output=True,
                                       text=True, timeout=300).stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors[:3]

    assert detect(tiny_bids, out, trained, [patient]) == []  # finished with this model: skipped, kept
    foreign = tmp_path / "foreign"
    shutil.copytree(out, foreign, ignore=shutil.ignore_patterns("sourcedata"))  # outputs not made by this run
    with pytest.raises(UserError, match="--overwrite"):
        detect(tiny_bids, foreign, trained, [patient])
    with pytest.raises(UserError, match="inside BIDS_DIR"):
        detect(tiny_bids, tiny_bids / "derivatives" / "x", trained, [patient])


def test_untrained_translator_is_the_identity(trained):
    """MONAI's UNet ends in a zero-initialised layer: untrained, ε = 0 and DDIM returns its input.
    A trained one must not (this is what a wrongly loaded model would silently do)."""
    from pseudohealthy.models.networks import build_model
    from pseudohealthy.models.trained import load_trained

    cfg = load_config(trained / "config.yaml")
    x = torch.randn((2, 2, 64, 64), generator=torch.Generator().manual_seed(0))
    t, labels = torch.tensor([5, 5]), torch.tensor([0, 0])
    assert build_model("translator", cfg)(x, t, class_labels=labels).abs().max() == 0
    assert load_trained(trained, cfg, "translator")(x, t, class_labels=labels).abs().max() > 0


def test_anomaly_map_and_histogram_matching_known_answers():
    brain = np.ones((4, 4, 1), bool)
    brain[0, 0, 0] = False
    real = np.zeros((4, 4, 1), np.float32)
    real[1, 1, 0] = 0.8
    pseudo = np.zeros_like(real)
    pseudo[2, 2, 0] = 0.5
    positive = anomaly_map(real - pseudo, brain, "positive")
    assert positive[1, 1, 0] == pytest.approx(0.8) and positive[2, 2, 0] == 0 and positive.sum() == pytest.approx(0.8)
    assert anomaly_map(real - pseudo, brain, "absolute")[2, 2, 0] == pytest.approx(0.5)
    # positive_last: the signed difference standardised per slice, then its positive part. One 3 x 3 slice:
    # median 0, MAD 1, so the map is max(d, 0) / 1.4826; taking the positive part first leaves six of the nine
    # voxels at 0, a MAD of 0, and the standardisation divides by its floor
    d = np.array([-2, -1, -1, 0, 0, 0, 1, 1, 5], np.float32).reshape(3, 3, 1)
    last = anomaly_map(d, np.ones_like(d, bool), "positive_last", slice_standardise=True)
    np.testing.assert_allclose(last.ravel(), np.clip(d.ravel(), 0, None) / 1.4826, rtol=1e-5)
    assert anomaly_map(d, np.ones_like(d, bool), "positive", slice_standardise=True).max() > 1e6
    matched = histogram_match(pseudo * 2 + 1, real, brain)  # a monotone map is undone exactly
    np.testing.assert_allclose(np.sort(matched[brain]), np.sort(real[brain]))


def _healthy_and_lesion(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A hand-made healthy FLAIR (grey 0.4, white 0.0, noise 0.05) and a lesion of 0.2 % of its voxels."""
    rng = np.random.default_rng(seed)
    healthy = np.where(rng.random((50, 50, 20)) < 0.5, 0.4, 0.0) + rng.normal(0, 0.05, (50, 50, 20))
    lesion = np.zeros(healthy.shape, bool)
    lesion[20:25, 20:25, 8:12] = True  # 100 of 50 000 voxels
    return healthy.astype(np.float32), lesion, np.ones(healthy.shape, bool)


@pytest.mark.parametrize("mode", ["quantile", "central", "affine"])
def test_every_matching_mode_undoes_a_global_intensity_change(mode):
    healthy, _, brain = _healthy_and_lesion()
    matched = histogram_match(healthy * 0.7 - 0.2, healthy, brain, mode=mode)
    tolerance = 0.01 if mode == "quantile" else 1e-4  # quantile: up to its knot grid in the far tails
    np.testing.assert_allclose(matched, healthy, atol=tolerance)


def test_lesion_safe_matching_keeps_what_synthesis_left_of_the_lesion():
    """The pseudo-healthy image healed the lesion halfway (its brightest voxels are what is left of it),
    and its intensities differ from the real FLAIR's by a global gain and offset. Dense quantile matching
    maps the half-healed lesion onto the real lesion's values and cancels most of the difference; the
    central and affine matches keep >= 90 % of it; without matching the global change swamps it."""
    healthy, lesion, brain = _healthy_and_lesion()
    real = np.where(lesion, healthy + 1.0, healthy)
    pseudo = np.where(lesion, healthy + 0.5, healthy) * 0.7 - 0.2
    left = {}
    for mode in ("quantile", "central", "affine", "none"):
        difference = real - histogram_match(pseudo, real, brain, mode=mode)
        left[mode] = difference[lesion].mean() / 0.5
        healthy_error = np.abs(difference[~lesion]).mean()
        if mode in ("central", "affine"):
            assert healthy_error < 0.01, (mode, healthy_error)
    assert left["quantile"] < 0.5, left
    assert left["central"] >= 0.9 and left["affine"] >= 0.9, left
    assert np.abs(real - pseudo)[~lesion].mean() > 0.1  # why matching is needed at all


def test_histogram_matching_accepts_the_old_boolean_setting():
    from pseudohealthy.config import load_config

    assert load_config("quick", overrides={"method": {"histogram_matching": True}}).method.histogram_matching \
        == "quantile"
    assert load_config("quick", overrides={"method": {"histogram_matching": False}}).method.histogram_matching \
        == "none"
    with pytest.raises(Exception, match="histogram_matching"):
        load_config("quick", overrides={"method": {"histogram_matching": "ranks"}})


def test_slice_standardisation_and_probseg_scale_known_answers():
    brain = np.ones((3, 3, 2), bool)
    score = np.zeros((3, 3, 2), np.float32)
    score[..., 0] = np.arange(9).reshape(3, 3)  # median 4, MAD 2
    score[..., 1] = 10 * np.arange(9).reshape(3, 3)  # same pattern, 10x the residual level
    z = standardise_slices(score, brain)
    assert z[2, 2, 0] == pytest.approx(4 / (1.4826 * 2)) and z[0, 0, 0] == 0  # below the median: 0
    np.testing.assert_allclose(z[..., 0], z[..., 1], rtol=1e-6)  # the slice's own scale is divided out
    assert score_to_unit(np.array([0.0, 2.0, 6.0]), 2.0).tolist() == [0.0, 0.5, 0.75]


def test_clusters_ranked_with_volume_and_location():
    score = np.zeros((10, 10, 10), np.float32)
    score[1:3, 1:3, 1:3] = 0.5  # 8 voxels, peak 0.5
    score[6:9, 6:9, 6:9] = 0.9  # 27 voxels, peak 0.9
    score[5, 0, 0] = 0.95  # a single voxel: below the minimum size
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    clusters, labels = find_clusters(score, affine, threshold=0.2, min_volume_mm3=16.0)
    assert [c.rank for c in clusters] == [1, 2]
    assert clusters[0].volume_mm3 == 27 * 8 and clusters[1].volume_mm3 == 8 * 8
    assert clusters[0].centroid_mm == [14.0, 14.0, 14.0]
    assert labels[7, 7, 7] == 1 and labels[1, 1, 1] == 2 and labels[5, 0, 0] == 0


def test_evaluate_recalibrates_under_overrides(trained):
    from pseudohealthy.evaluation.run import evaluate, parse_settings

    overrides = parse_settings(["diffusion.guidance_scale=0", "method.slice_standardise=false"])
    assert overrides == {"diffusion": {"guidance_scale": 0}, "method": {"slice_standardise": False}}
    with pytest.raises(UserError, match="SECTION.KEY=VALUE"):
        parse_settings(["guidance"])
    summary = evaluate(trained, overrides)
    assert summary["calibration"]["guidance_scale"] == 0 and summary["calibration"]["chosen_on"]
    outputs = summary["outputs"]
    assert outputs["patients"] + outputs["controls"] == len(summary["per_subject"]) >= 1
    assert 0 <= summary["template_grid"]["auprc"] <= 1 or outputs["patients"] == 0
    # the figures are read from the native-space derivatives written for the test units
    for row in summary["per_subject"]:
        anat = Path(summary["derivatives"]) / row["unit"] / "anat"
        assert list(anat.glob(f"{row['unit']}_*desc-clusters_dseg.tsv")) and not list(anat.parent.glob("figures"))


def test_threshold_keeps_validation_controls_nearly_clean():
    from pseudohealthy.detect.calibration import choose_threshold
    from pseudohealthy.detect.pipeline import SubjectMaps

    shape = (12, 12, 12)
    brain = np.ones(shape, bool)
    lesion = np.zeros(shape, bool)
    lesion[2:5, 2:5, 2:5] = True
    patient = np.zeros(shape, np.float32)
    patient[lesion] = 1.0
    patient[8:10, 8:10, 8:10] = 0.5  # a weaker false positive in the patient: best Dice is above 0.5
    control = np.zeros(shape, np.float32)
    control[5:8, 5:8, 5:8] = 2.0  # a healthy brain with one blob brighter than the lesion
    maps = [SubjectMaps(patient, patient, patient, brain, lesion, None),
            SubjectMaps(control, control, control, brain, np.zeros(shape, bool), None)]
    free = load_config("quick", overrides={"method": {"max_control_clusters": None, "min_cluster_mm3": 0}})
    threshold, best = choose_threshold(maps, free)
    assert 0.5 <= threshold < 1.0 and best == pytest.approx(1.0)
    strict = load_config("quick", overrides={"method": {"max_control_clusters": 0, "min_cluster_mm3": 0}})
    threshold, best = choose_threshold(maps, strict)
    assert threshold >= 2.0 and best == 0.0  # the control's blob forces a threshold above the lesion


def test_unwritable_out_dir_is_refused(tiny_bids, tmp_path, monkeypatch):
    import os

    out = tmp_path / "readonly"
    out.mkdir()
    # Tests may run as root, for whom chmod does not bite: ask the same question the code asks.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).resolve() != out.resolve())
    with pytest.raises(UserError, match="not writable"):
        detect(tiny_bids, out, tmp_path / "model")


def test_detect_on_a_plain_pair(trained, tiny_bids, tiny_phantom, tmp_path):
    from pseudohealthy.detect.run import detect_pair

    patient = next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "fcd")
    chosen = build_inventory(tiny_bids, [patient]).subjects[0]
    loose = tmp_path / "scans"
    loose.mkdir()
    t1, flair = loose / "patient_t1.nii.gz", loose / "patient_flair.nii.gz"
    shutil.copy(chosen.t1w, t1)
    shutil.copy(chosen.flair, flair)
    result = detect_pair(t1, flair, tmp_path / "out", trained, "sub-pat1")
    anat = tmp_path / "out" / "sub-pat1" / "anat"
    score = nib.load(anat / "sub-pat1_label-FCD_desc-anomaly_probseg.nii.gz")
    assert score.shape == nib.load(flair).shape and np.allclose(score.affine, nib.load(flair).affine)
    assert result["participant_id"] == "sub-pat1" and (tmp_path / "out" / "sub-pat1.html").is_file()
    sidecar = json.loads((anat / "sub-pat1_desc-clusters_dseg.json").read_text())
    assert sidecar["Sources"][0].startswith("file://")
    with pytest.raises(UserError, match="inside the input folder"):
        detect_pair(t1, flair, loose / "out", trained)
    with pytest.raises(UserError, match="not found"):
        detect_pair(loose / "missing.nii.gz", flair, tmp_path / "out2", trained)


def test_normative_residual_against_numbers_computed_by_hand():
    """Three controls' residuals at two voxels: (0, 1, 2) -> mean 1, SD 1; (5, 5, 5) -> SD 0, floored at the
    median SD over covered voxels. A patient's residual 3 at the first voxel is 2 SDs above the controls."""
    from pseudohealthy.anomaly.normative import fit_normative

    residuals = [np.array([[[0.0, 5.0, 9.0]]]), np.array([[[1.0, 5.0, 9.0]]]), np.array([[[2.0, 5.0, 9.0]]])]
    brains = [np.array([[[True, True, False]]])] * 3  # the third voxel lies outside every brain
    stats = fit_normative(residuals, brains, ["a", "b", "c"], smoothing_vox=0)
    np.testing.assert_allclose(stats.mean[0, 0], [1.0, 5.0, 0.0])
    np.testing.assert_allclose(stats.std[0, 0], [1.0, 0.5, 0.5])  # covered SDs 1 and 0: median 0.5
    np.testing.assert_allclose(stats.zscore(np.array([[[3.0, 6.0, 0.0]]]))[0, 0], [2.0, 2.0, 0.0])
    with pytest.raises(ValueError):
        fit_normative(residuals[:1], brains[:1], ["a"])


def test_normative_residual_is_fitted_once_per_setting_kept_and_exported(trained, tmp_path):
    """method.normative: calibrate fits the stats on the training controls (here the tiny dataset's control
    and a copy of it) and keeps them under WORK_DIR/normative/ by the settings of their draws, which do not
    include N (each draw's residual is z-scored, so the stats are a single draw's); another noise level gets
    a fit of its own; export-model carries the calibrated settings' fit (and refuses to go without it); an
    archive fits nothing itself, but networks from an archive can be fitted on another folder's controls."""
    import shutil

    from pseudohealthy.anomaly.normative import load_normative
    from pseudohealthy.bundle.archive import export_model, opened_model
    from pseudohealthy.config import load_config, save_config, with_overrides
    from pseudohealthy.detect.calibration import calibrate
    from pseudohealthy.detect.detector import Detector
    from pseudohealthy.detect.pipeline import load_models
    from pseudohealthy.models.trained import normative_key
    from pseudohealthy.workdir import normative_file

    work = tmp_path / "work"
    shutil.copytree(trained, work)
    rows = [line.split("\t") for line in (work / "splits.tsv").read_text().splitlines()]
    control = next(r[0] for r in rows if r[1] == "hc")
    shutil.copytree(work / "subjects" / control, work / "subjects" / f"{control}copy")
    rows = [r if r[1] != "hc" else [r[0], "hc", "train"] for r in rows] + [[f"{control}copy", "hc", "train"]]
    rows = [r if r[1] != "fcd" else [r[0], "fcd", "val"] for r in rows]
    (work / "splits.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    cfg = load_config(work / "config.yaml", overrides={"method": {"normative": True}})
    save_config(cfg, work / "config.yaml")

    calibrate(work, samples=2)
    key = normative_key(work, cfg)
    assert key == normative_key(work, with_overrides(cfg, {"diffusion": {"samples": 8}}))  # N: not the fit's
    assert key != normative_key(work, with_overrides(cfg, {"method": {"normative_draws": 2}}))
    stats, stored = load_normative(normative_file(work, key))
    assert stored == key and sorted(stats.participants) == sorted([control, f"{control}copy"])
    assert stats.std.min() > 0 and np.isfinite(stats.mean).all()
    fitted = normative_file(work, key).stat().st_mtime_ns
    load_models(work, with_overrides(cfg, {"diffusion": {"samples": 8}}))
    assert normative_file(work, key).stat().st_mtime_ns == fitted  # read, not fitted again
    splits = (work / "splits.tsv").read_text()
    shutil.copytree(work / "subjects" / control, work / "subjects" / f"{control}copy2")
    (work / "splits.tsv").write_text(splits + f"{control}copy2\thc\ttrain\n")
    assert len(load_models(work, cfg).normative.participants) == 3  # other training controls: fitted again
    (work / "splits.tsv").write_text(splits)
    load_models(work, cfg)  # and again for the two
    other = with_overrides(cfg, {"diffusion": {"noise_level": 10}})
    moved = Detector.for_config(work, cfg).with_config(other)  # a tune point under other settings: its own fit
    assert normative_file(work, normative_key(work, other)).is_file()
    assert not np.array_equal(moved.models.normative.mean, stats.mean)
    save_config(with_overrides(cfg, {"diffusion": {"noise_level": 15}}), work / "config.yaml")
    with pytest.raises(UserError, match="calibrate"):
        export_model(work, tmp_path / "stale.zip")  # no fit for the config's noise level
    save_config(cfg, work / "config.yaml")
    export_model(work, tmp_path / "model.zip")
    with opened_model(tmp_path / "model.zip") as unpacked:
        assert sorted(p.name for p in (unpacked / "normative").iterdir()) == [normative_file(work, key).name]
        # its checkpoints are slimmed (other bytes), the weights the same: the fit is found, not redone
        shipped = Detector.load(unpacked).models.normative
        np.testing.assert_array_equal(shipped.mean, stats.mean)
        np.testing.assert_array_equal(shipped.std, stats.std)
        with pytest.raises(UserError, match="training controls"):  # other settings, nothing to fit them on
            load_models(unpacked, other)
        transfer = Detector.for_config(unpacked, other, data_dir=work)  # fitted on WORK_DIR's controls
        assert normative_file(work, normative_key(unpacked, other)).is_file()
        assert sorted(transfer.models.normative.participants) == sorted([control, f"{control}copy"])
