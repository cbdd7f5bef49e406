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
    prepare(tiny_bids, work, load_config("quick"), jobs=2)
    return work

