"""The benchmark command on the tiny dataset: trains what a method needs, scores it with the shared
metrics, writes the table and figures with provenance, and reuses finished methods."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from pseudohealthy.anomaly.clusters import find_clusters
from pseudohealthy.config import load_config, save_config
from pseudohealthy.detect.pipeline import SubjectMaps
from pseudohealthy.detect.synthesis import Synthesis
from pseudohealthy.evaluation.benchmark import run_benchmark
from pseudohealthy.evaluation.methods import select_methods
from pseudohealthy.evaluation.template_scores import aggregate, score_subject, summarise_method
from pseudohealthy.models.trained import model_dir


@pytest.fixture(scope="module")
def bench_work(tiny_prepared, tiny_phantom, tmp_path_factory):
    """The tiny work folder with roles set for a benchmark: one test patient, one training patient,
    the control for validation; tiny models and a short sampler."""
    work = tmp_path_factory.mktemp("bench") / "work"
    shutil.copytree(tiny_prepared, work)
    cfg = load_config(work / "config.yaml", overrides={
        "diffusion": {"steps": 2, "noise_level": 20},
        "train_translator": {"batch_size": 4, "iterations": 3, "checkpoint_every": 3},
        "train_classifier": {"batch_size": 4, "iterations": 3, "checkpoint_every": 3}})
    save_config(cfg, work / "config.yaml")
    patients = sorted(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "fcd")
    control = next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "hc")
    role = {patients[0]: ("fcd", "test"), patients[1]: ("fcd", "train"), control: ("hc", "val")}
    (work / "splits.tsv").write_text("participant_id\tgroup\trole\n" + "".join(
        f"{pid}\t{group}\t{r}\n" for pid, (group, r) in sorted(role.items())))
    return work


def test_benchmark_tunes_on_validation_scores_detect_outputs_and_reuses_results(bench_work, tmp_path, monkeypatch):
    import pseudohealthy.evaluation.benchmark as bench
    import pseudohealthy.evaluation.tune as tune_module

    calibrated_on: list[set] = []
    seeds_calibrated_by_benchmark: list[int] = []

    def spy(calibration_from, seeds=None):  # every threshold is chosen from these maps: never a test subject's
        def wrapped(maps, cfg):
            calibrated_on.append(set(maps))
            if seeds is not None:
                seeds.append(cfg.seed)
            return calibration_from(maps, cfg)
        return wrapped

    fresh_calibration = bench.calibration_from
    monkeypatch.setattr(bench, "calibration_from", spy(bench.calibration_from, seeds_calibrated_by_benchmark))
    monkeypatch.setattr(tune_module, "calibration_from", spy(tune_module.calibration_from))
    out = tmp_path / "bench"
    # smaller grids than the real ones (the sweep is the same code): L for ours, the noise std (a training knob)
    # for the autoencoder
    full, no_histmatch, dae = select_methods("full,no_histmatch,denoising_ae")
    methods = [replace(full, grid=("diffusion.noise_level=20,10",)),
               replace(no_histmatch, grid=("diffusion.noise_level=20,10",)),
               replace(dae, grid=("method.denoising_noise_std=0.2,0.4",))]
    events = []
    results = run_benchmark(bench_work, methods, out, on_event=lambda e, d: events.append((e, d)), seeds=(0, 1))
    val = {line.split("\t")[0] for line in bench_work.joinpath("splits.tsv").read_text().splitlines()
           if line.endswith("\tval")}
    test = {line.split("\t")[0] for line in bench_work.joinpath("splits.tsv").read_text().splitlines()
            if line.endswith("\ttest")}
    assert calibrated_on and all(units == val for units in calibrated_on) and not test & val
    # the sweep's validation run at the chosen point and seed 0 serves the seed-0 test run: only seed 1 runs
    # the validation subjects again, once per method; and reusing it is exact
    assert seeds_calibrated_by_benchmark == [1, 1, 1]
    from pseudohealthy.config import with_overrides
    from pseudohealthy.detect.calibration import analyse_role
    from pseudohealthy.detect.pipeline import load_models
    from pseudohealthy.evaluation.methods import method_config
    from pseudohealthy.evaluation.tune import parse_grid

    full_result = results[0]
    chosen = next(p["overrides"] for p in full_result["grid"]["points"] if p["point"] == full_result["grid"]["chosen"])
    assert chosen in parse_grid(list(methods[0].grid))
    cfg = with_overrides(method_config(bench_work, methods[0]), {**chosen, "seed": 0}, "test")
    fresh = fresh_calibration(analyse_role(bench_work, "val", load_models(bench_work, cfg), cfg), cfg)
    assert full_result["per_seed"][0]["calibration"]["threshold"] == fresh["threshold"]
    # the autoencoder's grid is over a training knob: one model per noise setting
    trained = {d for e, d in events if e == "train"}
    assert {"translator-t500", "autoencoder-healthy", "autoencoder-healthy-noise0.4x16"} <= trained
    assert [r["name"] for r in results] == ["full", "no_histmatch", "denoising_ae"]
    for r in results:
        m = r["metrics"]
        assert m["patients"] == 1 and m["controls"] == 0 and r["seeds"] == [0, 1]
        assert 0 <= m["native_auprc"]["mean"] <= 1 and m["native_auprc"]["sd"] >= 0
        low, high = m["native_auprc"]["ci"]
        assert low <= high
        assert len(r["per_seed"]) == 2 and len(r["per_subject"]) == 2
        for seed_run in r["per_seed"]:  # oracle: best threshold on the same voxels and a grid as dense
            assert seed_run["template"]["dice_oracle"] >= seed_run["template"]["dice_val"] - 1e-9
        assert len(r["grid"]["points"]) == 2 and r["grid"]["chosen"] in {p["point"] for p in r["grid"]["points"]}
        assert r["pr_curve"]["recall"][-1] == 1.0
    # the figures are those of the derivatives detect wrote: score them again from disk
    from pseudohealthy.data.preprocess import prepared_inputs
    from pseudohealthy.evaluation.native_scores import score_unit

    for seed_run in results[0]["per_subject"]:
        unit = seed_run["unit"]
        inputs = prepared_inputs(bench_work / "subjects" / unit)
        again = score_unit(out / "derivatives" / "full" / f"seed-{seed_run['seed']}", unit, inputs.lesion_mask,
                           inputs.flair)
        assert again.row() == {k: v for k, v in seed_run.items() if k != "seed"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [row["method"] for row in rows] == ["full", "no_histmatch", "denoising_ae"]
    for row in rows:
        assert row["commit"] and json.loads(row["seeds"]) == [0, 1] and len(row["split_sha256"]) == 64
        assert (out / row["config"]).is_file()
    assert set(json.loads(rows[0]["checkpoints"])) == {"translator-t500", "classifier"}
    # the two translator methods share the method's own weights
    full_models, ablation_models = (json.loads(row["checkpoints"]) for row in rows[:2])
    assert full_models["translator-t500"] == ablation_models["translator-t500"]
    table = (out / "results.md").read_text()
    assert sum(line.startswith("| ") and "(`" in line for line in table.splitlines()) == 3
    assert "ranked list" in table and "oracle" in table and "cm³" in table and "Kascenas" in table
    report = json.loads((out / "results.json").read_text())  # strict JSON: NaN written as null
    assert [m["name"] for m in report["methods"]] == ["full", "no_histmatch", "denoising_ae"]
    paired = report["paired_versus_full"]  # ours minus each method, on the same subjects and seeds
    assert [c["method"] for c in paired] == ["no_histmatch", "denoising_ae"] and "`full` minus" in table
    for c, r in zip(paired, results[1:]):
        assert c["ranked_top1"]["difference"] == pytest.approx(
            results[0]["metrics"]["ranked_top1"]["mean"] - r["metrics"]["ranked_top1"]["mean"])
        low, high = c["native_auprc"]["ci"]
        assert low <= c["native_auprc"]["difference"] <= high
    for name in ("pr_curves", "overlays"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    # where and how long each row was computed is kept with it
    record = json.loads((out / "methods" / "full" / "seed-1.json").read_text())
    assert record["machine"]["cpus"] >= 1 and record["seconds"] > 0 and record["finished"]
    assert all(p["seconds"] > 0 for p in results[0]["grid"]["points"])
    assert table.startswith("Computed by commit") and "recorded compute time" in table.splitlines()[0]
    # --report-only writes the same tables again from the stored methods, running nothing
    (out / "results.md").unlink()
    done = subprocess.run([sys.executable, "-m", "pseudohealthy", "benchmark", str(bench_work), "--out", str(out),
                           "--methods", "full,no_histmatch,denoising_ae", "--report-only"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "results.md").read_text() == table

    stamp = (out / "methods" / "full" / "seed-0.json").stat().st_mtime_ns
    events.clear()
    again = run_benchmark(bench_work, methods[:1], out, on_event=lambda e, d: events.append((e, d)), seeds=(0, 1))
    assert not [e for e in events if e[0] in ("train", "method", "subject", "point")]  # nothing re-run
    assert json.dumps(again[0]["metrics"]) == json.dumps(results[0]["metrics"])
    assert (out / "methods" / "full" / "seed-0.json").stat().st_mtime_ns == stamp

    # generalisation: the method with another folder's networks (here: the same ones, halved), used as they are
    other = tmp_path / "other"
    (other / "models").mkdir(parents=True)
    shutil.copy(bench_work / "config.yaml", other / "config.yaml")
    full_cfg = load_config(bench_work / "config.yaml")
    for kind in ("translator", "classifier"):
        shutil.copytree(model_dir(bench_work, kind, full_cfg), model_dir(other, kind, full_cfg))
    path = model_dir(other, "translator", full_cfg) / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["ema"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in ckpt["ema"].items()}
    torch.save(ckpt, path)
    calibrated_on.clear()
    events.clear()
    moved = run_benchmark(bench_work, [], out, on_event=lambda e, d: events.append((e, d)), seeds=(0,),
                          transfer=other)
    assert [r["name"] for r in moved] == ["full_transfer"] and moved[0]["role"] == "generalisation"
    assert not [e for e in events if e[0] == "train"]
    assert calibrated_on and all(units == val for units in calibrated_on)
    used = moved[0]["provenance"]["checkpoints"]
    assert used["translator-t500"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert used["translator-t500"]["sha256"] != json.loads(rows[0]["checkpoints"])["translator-t500"]["sha256"]
    assert (out / "derivatives" / "full_transfer" / "seed-0").is_dir()


def test_benchmark_cli_errors_are_one_line(bench_work, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "pseudohealthy", "benchmark", *args], capture_output=True,
                              text=True, timeout=300)

    out = run(str(bench_work), "--methods", "control_zscore", "--transfer-model", str(tmp_path / "nowhere.zip"))
    assert out.returncode == 2 and "nowhere.zip: not found" in out.stderr and "Traceback" not in out.stderr
    untrained = tmp_path / "untrained"  # another model's folder without the networks `full` needs: refused first
    untrained.mkdir()
    shutil.copy(bench_work / "config.yaml", untrained / "config.yaml")
    out = run(str(bench_work), "--methods", "control_zscore", "--transfer-model", str(untrained))
    assert out.returncode == 2 and "has no trained translator" in out.stderr and "Traceback" not in out.stderr
    out = run(str(bench_work), "--methods", "full,magic")
    assert out.returncode == 2 and "unknown method" in out.stderr and "Traceback" not in out.stderr
    out = run(str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "--bids" in out.stderr
    out = run(str(bench_work), "--report-only", "--out", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no finished method" in out.stderr and "Traceback" not in out.stderr
    out = run(str(bench_work), "--methods", "control_zscore", "--out", str(tmp_path / "z"))
    assert out.returncode == 2 and "at least 2 training controls" in out.stderr.replace("\n", " ")
    assert "--methods" in run("--help").stdout


def _maps(lesion: np.ndarray, anomaly: np.ndarray, probs: np.ndarray | None = None) -> SubjectMaps:
    brain = np.ones(lesion.shape, bool)
    zs = np.arange(lesion.shape[2])
    syn = Synthesis(anomaly, probs if probs is not None else np.zeros((lesion.shape[2], 1), np.float32), zs)
    return SubjectMaps(anomaly, anomaly, anomaly.astype(np.float32), brain, lesion, syn)


def test_subject_scores_against_hand_computed_answers():
    cfg = load_config("quick", overrides={"method": {"min_cluster_mm3": 0}})
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    shape = (20, 20, 6)
    lesion = np.zeros(shape, bool)
    lesion[4:7, 4:7, 1:3] = True  # lesion in slices 1 and 2
    anomaly = np.zeros(shape)
    anomaly[4, 4, 1] = 3.0  # slice 1: peak inside the lesion
    anomaly[15, 15, 2] = 5.0  # slice 2: peak far from the lesion (9, 9) px from its corner (6, 6)
    anomaly[6, 6, 2] = 4.0  # the lesion's own peak there, lower (not 26-connected to (4, 4, 1))
    lobe = np.full(shape, 1)  # everything frontal (code 1 = FL)
    probs = np.zeros((6, 9), np.float32)
    probs[:, 0] = 1.0
    probs[2] = 0
    probs[2, 1] = 0.9  # most abnormal slice: class 1 (FL)
    s = score_subject("sub-p", _maps(lesion, anomaly, probs), 1.0, cfg, affine, lobe, truth_class=1)
    # R@5 (1.67 px on 3 mm pixels): slice 1 hit, slice 2 missed; R@10 (3.33 px): still missed
    assert s.recalled == {5: (1, 2), 10: (1, 2)}
    clusters, _ = find_clusters(anomaly, affine, 1.0, 0)
    assert len(clusters) == 3 and s.clusters == 3 and s.false_clusters == 1
    assert not s.top1 and s.top3  # the top cluster is the far one
    assert s.peak_distance_mm == pytest.approx(3 * np.hypot(15 - 6, 15 - 6))
    assert s.lobe_correct == 1.0 and s.classifier_lobe_correct == 1.0
    assert s.dice == pytest.approx(2 * 2 / (3 + 18))

    # One wide cluster that touches the lesion but peaks 8 voxels (24 mm) away: touching is not finding.
    wide = np.zeros(shape)
    wide[6:15, 5, 1] = np.linspace(1.5, 2.0, 9)  # (6, 5, 1) is inside the lesion; the peak is at (14, 5, 1)
    far = score_subject("sub-w", _maps(lesion, wide, probs), 1.0, cfg, affine, lobe, truth_class=1)
    assert far.clusters == 1 and not far.top1 and far.false_clusters == 1
    assert far.peak_distance_mm == pytest.approx(3 * (14 - 6))

    control = score_subject("sub-c", _maps(np.zeros(shape, bool), anomaly), 1.0, cfg, affine, lobe, 0)
    assert control.clusters == 3 and control.recalled == {}
    figures = aggregate([s, control])
    assert figures["r@5"] == 0.5 and figures["top1"] == 0.0 and figures["top3"] == 1.0
    assert figures["fp_per_patient"] == 1 and figures["fp_per_control"] == 3 and figures["specificity"] == 0
    summary = summarise_method([s, control], n_resamples=20)
    assert summary["patients"] == 1 and summary["controls"] == 1 and summary["lesion_slices"] == 2
    low, high = summary["r@5_ci"]
    assert low <= 0.5 <= high


def test_train_cli_writes_a_variant_beside_the_methods_models(bench_work, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(bench_work, work, ignore=shutil.ignore_patterns("models"))
    out = subprocess.run([sys.executable, "-m", "pseudohealthy", "train", str(work), "--model", "autoencoder",
                          "--set", "method.train_on=healthy", "--iterations", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.name for p in (work / "models").iterdir()) == ["autoencoder-healthy"]
    bad = subprocess.run([sys.executable, "-m", "pseudohealthy", "train", str(work), "--model", "translator",
                          "--set", "method.condition=T2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "method.condition" in bad.stderr and "Traceback" not in bad.stderr


def test_figures_read_back_from_json_are_nan_where_they_were_nan():
    from pseudohealthy.evaluation.report import json_safe, nan_for_null

    figures = {"fp_clusters_per_control": {"mean": float("nan"), "sd": 0.0, "ci": [float("nan"), 1.5]}, "n": [2, 3]}
    back = nan_for_null(json.loads(json.dumps(json_safe(figures), allow_nan=False)))
    assert np.isnan(back["fp_clusters_per_control"]["mean"]) and back["fp_clusters_per_control"]["sd"] == 0.0
    assert np.isnan(back["fp_clusters_per_control"]["ci"][0]) and back["fp_clusters_per_control"]["ci"][1] == 1.5
    assert back["n"] == [2, 3]
