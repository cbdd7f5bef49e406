"""``tune`` and ``calibrate`` choose on validation subjects only: no test subject's maps are ever made."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pseudohealthy.detect.calibration as detect_run
from pseudohealthy.data.splits import read_splits
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.tune import parse_grid, tune


def test_grid_is_the_product_in_the_order_given():
    grid = parse_grid(["diffusion.noise_level=100,200", "diffusion.eta=0,1"])
    assert grid == [{"diffusion": {"noise_level": 100, "eta": 0}}, {"diffusion": {"noise_level": 100, "eta": 1}},
                    {"diffusion": {"noise_level": 200, "eta": 0}}, {"diffusion": {"noise_level": 200, "eta": 1}}]
    with pytest.raises(UserError, match="SECTION.KEY=V1,V2"):
        parse_grid(["diffusion.noise_level"])


@pytest.fixture()
def with_val_patient(trained, tmp_path) -> Path:
    """The trained tiny work folder with its training patient made a validation patient (so validation
    AUPRC exists); the test patient stays test."""
    work = tmp_path / "work"
    shutil.copytree(trained, work)
    lines = (work / "splits.tsv").read_text().splitlines()
    lines = [line.replace("\ttrain", "\tval") if "\tfcd\t" in line else line for line in lines]
    (work / "splits.tsv").write_text("\n".join(lines) + "\n")
    return work


def test_tune_and_calibrate_read_validation_subjects_only(with_val_patient, tmp_path, monkeypatch):
    work = with_val_patient
    read: list[str] = []
    original = detect_run.analyse

    def spy(subject_dir, *args, **kwargs):
        read.append(Path(subject_dir).name)
        return original(subject_dir, *args, **kwargs)

    monkeypatch.setattr(detect_run, "analyse", spy)
    grid = parse_grid(["diffusion.guidance_scale=0,5"])
    result = tune(work, grid, seeds=[0, 1], out_dir=tmp_path / "tune")
    detect_run.calibrate(work)
    splits = read_splits(work)
    test = {unit for unit, _, role in splits if role == "test"}
    val = {unit for unit, _, role in splits if role == "val"}
    assert test and len(val) == 2
    assert set(read) == val and not set(read) & test
    assert len(read) == 2 * 2 * 2 + 2  # points x seeds x validation subjects, then calibrate

    rows = (tmp_path / "tune" / "grid.tsv").read_text().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("point\tseed")
    assert result["chosen"]["point"] in {"diffusion.guidance_scale=0", "diffusion.guidance_scale=5"}
    assert yaml.safe_load((tmp_path / "tune" / "chosen.yaml").read_text()) == result["chosen"]["overrides"]
    first = result["points"][0]
    best = max(p["val_auprc_mean"] for p in result["points"])
    if first["val_auprc_mean"] >= best - max(p["val_auprc_sd"] for p in result["points"]
                                              if p["val_auprc_mean"] == best):
        assert result["chosen"]["point"] == first["point"]  # ties go to the first (cheaper) value
    tune(work, grid, seeds=[0, 1], out_dir=tmp_path / "tune")  # finished points are reused
    assert len(read) == 10
    assert len(json.loads((tmp_path / "tune" / "grid.json").read_text())["rows"]) == 4


def test_tune_command_line(with_val_patient, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pseudohealthy", "tune", str(with_val_patient), "--grid",
                          "diffusion.guidance_scale=0", "--out", str(tmp_path / "t")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "chosen" in out.stderr and (tmp_path / "t" / "chosen.yaml").is_file()
    bad = subprocess.run([sys.executable, "-m", "pseudohealthy", "tune", str(with_val_patient), "--grid", "x"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "SECTION.KEY=V1,V2" in bad.stdout + bad.stderr


def test_a_model_fits_a_work_folder_when_preprocessing_agrees(tmp_path):
    from pseudohealthy.config import load_config, save_config
    from pseudohealthy.evaluation.run import require_same_preprocessing

    work, split_only, other_grid = tmp_path / "work", tmp_path / "split", tmp_path / "grid"
    save_config(load_config("quick"), work / "config.yaml")
    # another split of the subjects into roles: the networks saw the same kind of input
    save_config(load_config("quick", overrides={"data": {"test_control_fraction": 0.3}}), split_only / "config.yaml")
    require_same_preprocessing(work, split_only)
    # another template grid: refused, with the preset to prepare with
    save_config(load_config("quick", overrides={"data": {"template_voxel_mm": 2.0}}), other_grid / "config.yaml")
    with pytest.raises(UserError, match="other data settings than the model's"):
        require_same_preprocessing(work, other_grid)
