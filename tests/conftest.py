"""Shared fixtures: one tiny synthetic dataset per test session (2 patients, 1 control)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pseudohealthy.phantom.dataset import generate_dataset

TINY_SEED = 7


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> dict:
    """Ground truth of a generated 3-subject dataset; ``truth['bids_dir']`` is the BIDS root."""
    root = tmp_path_factory.mktemp("phantom")
    truth = generate_dataset(root / "bids", n_patients=2, n_controls=1, seed=TINY_SEED, jobs=2,
                             truth_dir=root / "truth")
    truth["truth_dir"] = str(root / "truth")
    return truth


@pytest.fixture(scope="session")
def tiny_bids(tiny_phantom) -> Path:
    return Path(tiny_phantom["bids_dir"])


@pytest.fixture(scope="session")
def tiny_prepared(tiny_bids, tmp_path_factory) -> Path:
    """The tiny dataset run through ``prepare`` with the quick preset; returns the work folder."""
    from pseudohealthy.config import load_config
    from pseudohealthy.data.prepare import prepare

    work = tmp_path_factory.mktemp("work") / "prepared"
    # One draw per slice keeps the suite fast; tests of several draws ask for them explicitly.
    prepare(tiny_bids, work, load_config("quick", overrides={"diffusion": {"samples": 1}}), jobs=2)
    return work



@pytest.fixture(scope="session")
def trained(tiny_prepared, tmp_path_factory) -> Path:
    """A copy of the tiny work folder with briefly trained models, a short sampler, and a threshold
    calibrated for 2 draws per slice (so detection makes spread and confidence outputs)."""
    import shutil

    from pseudohealthy.config import load_config, save_config
    from pseudohealthy.detect.calibration import calibrate
    from pseudohealthy.training.trainer import train

    work = tmp_path_factory.mktemp("detect") / "work"
    shutil.copytree(tiny_prepared, work)
    cfg = load_config(work / "config.yaml", overrides={
        "diffusion": {"steps": 2, "noise_level": 20},
        "train_translator": {"batch_size": 4}, "train_classifier": {"batch_size": 4}})
    save_config(cfg, work / "config.yaml")
    # The tiny dataset has no validation subjects: mark the control as one (roles are data, not code).
    lines = (work / "splits.tsv").read_text().splitlines()
    lines = [line.replace("\ttrain", "\tval") if "\thc\t" in line else line for line in lines]
    (work / "splits.tsv").write_text("\n".join(lines) + "\n")
    train(work, cfg, "translator", iterations=3)
    train(work, cfg, "classifier", iterations=3)
    calibrate(work, samples=2)
    return work
