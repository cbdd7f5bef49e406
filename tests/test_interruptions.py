"""A full run killed with SIGKILL inside prepare, train and detect: nothing half-written under a final
name, re-running continues, resumed training equals an uninterrupted run, and the input is untouched."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import yaml

from helpers import copy_dataset, tree_digest
from pseudohealthy.config import load_config
from pseudohealthy.models.trained import model_dir
from pseudohealthy.training.trainer import train


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pseudohealthy", *args]


def run_and_kill(args: list[str], ready: Callable[[], bool], delay: float, timeout: float = 600) -> None:
    """Start the CLI, wait until ``ready()``, wait ``delay`` more seconds, then SIGKILL it."""
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"{args[0]} ended (rc {proc.returncode}) before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(delay)
    assert proc.poll() is None, f"{args[0]} finished before the kill; shorten the delay"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def assert_no_half_written_files(root: Path) -> None:
    """Every file under its final name parses completely (temporary ``.tmp-*`` files may remain)."""
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or any(part.startswith(".tmp-") for part in path.parts):
            continue
        name = path.name
        if name.endswith((".nii.gz", ".nii")):
            np.asarray(nib.load(path).dataobj)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith((".yaml", ".yml")):
            yaml.safe_load(path.read_text())
        elif name.endswith(".pt"):
            torch.load(path, weights_only=True)
        elif name.endswith(".npy"):
            np.load(path, mmap_mode="r")
        elif name.endswith(".png"):
            assert path.read_bytes()[-8:] == b"IEND\xaeB`\x82", f"{path} is truncated"


def _ok(args: list[str]) -> str:
    done = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_killed_run_continues_and_loses_nothing(tiny_bids, tmp_path):
    rng = random.Random(0)
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    before = tree_digest(bids)
    work = tmp_path / "work"

    # prepare: killed while the second subject is being processed
    subjects = work / "subjects"
    run_and_kill(["prepare", str(bids), str(work), "--jobs", "1"],
                 lambda: len(list(subjects.glob("*/meta.json"))) >= 1, rng.uniform(0.5, 4))
    assert_no_half_written_files(work)
    finished = {p: p.stat().st_mtime_ns for p in subjects.glob("*/meta.json")}
    _ok(["prepare", str(bids), str(work), "--jobs", "1"])
    assert finished and all(p.stat().st_mtime_ns == t for p, t in finished.items())  # not redone
    assert len(list(subjects.glob("*/meta.json"))) == 3

    # train: killed after a checkpoint; --resume reaches the weights of an uninterrupted run
    tiny = {"train_classifier": {"batch_size": 4, "checkpoint_every": 3}}
    cfg = load_config(work / "config.yaml", overrides=tiny)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    reference = tmp_path / "reference"
    shutil.copytree(work, reference)
    checkpoint = model_dir(work, "classifier", cfg) / "checkpoint.pt"
    run_and_kill(["train", str(work), "--model", "classifier", "--iterations", "60"],
                 checkpoint.exists, rng.uniform(0, 0.3))
    assert_no_half_written_files(work)
    _ok(["train", str(work), "--model", "classifier", "--iterations", "60", "--resume"])
    train(reference, cfg, "classifier", iterations=60)
    resumed = torch.load(checkpoint, weights_only=True)
    uninterrupted = torch.load(model_dir(reference, "classifier", cfg) / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == uninterrupted["step"] == 60
    for key, value in uninterrupted["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0)

    # detect: killed inside the second subject; re-running skips the first, redoes the second, and
    # every anomaly map is bit-identical to an uninterrupted run's (determinism on CPU)
    cfg = load_config(work / "config.yaml", overrides={"diffusion": {"steps": 2, "noise_level": 20, "samples": 1},
                                                        "train_translator": {"batch_size": 4}})
    (work / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    splits = (work / "splits.tsv").read_text().replace("\thc\ttrain", "\thc\tval")  # tiny set: 1 val subject
    (work / "splits.tsv").write_text(splits)
    train(work, cfg, "translator", iterations=3)
    _ok(["calibrate", str(work)])
    derivatives = tmp_path / "derivatives"
    run_and_kill(["detect", str(bids), str(derivatives), "participant", "--model", str(work)],
                 lambda: len(list(derivatives.glob("sub-*.html"))) >= 1, rng.uniform(0, 3))
    assert_no_half_written_files(derivatives)
    finished = {p: p.stat().st_mtime_ns for page in derivatives.glob("sub-*.html")
                for p in [page, *(derivatives / page.stem / "anat").iterdir()]}
    _ok(["detect", str(bids), str(derivatives), "participant", "--model", str(work)])
    assert finished and all(p.stat().st_mtime_ns == t for p, t in finished.items())  # finished: skipped
    uninterrupted = tmp_path / "uninterrupted"
    _ok(["detect", str(bids), str(uninterrupted), "participant", "--model", str(work)])
    maps = sorted(p.relative_to(uninterrupted) for p in uninterrupted.rglob("*_probseg.nii.gz"))
    assert len(maps) == 2 * 3  # anomaly map and its spread, for each of the 3 subjects
    for rel in maps:
        assert np.array_equal(np.asarray(nib.load(derivatives / rel).dataobj),
                              np.asarray(nib.load(uninterrupted / rel).dataobj)), rel
    assert_no_half_written_files(derivatives)
    assert tree_digest(bids) == before  # the input is never modified by any step
