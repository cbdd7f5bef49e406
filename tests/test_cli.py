"""The command line as a user runs it (subprocess: real exit codes, real stderr)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pseudohealthy import __version__
from pseudohealthy.phantom.preview import dataset_previews


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pseudohealthy", *args], capture_output=True, text=True,
                          timeout=300)


def test_version_and_help():
    out = _run("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    help_text = _run("--help").stdout
    for command in ("phantom", "demo"):
        assert command in help_text
    assert "--patients" in _run("phantom", "--help").stdout


def test_phantom_refuses_a_users_folder_without_touching_it(tmp_path):
    target = tmp_path / "mydata"
    target.mkdir()
    keep = target / "notes.txt"
    keep.write_text("precious")
    out = _run("phantom", str(target), "--patients", "1", "--controls", "0")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(target) in out.stderr.replace("\n", "")
    out = _run("phantom", str(target), "--patients", "1", "--controls", "0", "--overwrite")
    assert out.returncode == 2 and "not a dataset made by the phantom" in out.stderr.replace("\n", " ")
    assert keep.read_text() == "precious" and sorted(target.iterdir()) == [keep]
    assert "Traceback" in _run("--debug", "phantom", str(target), "--patients", "1").stderr


def test_previews_are_pictures(tiny_phantom, tmp_path):
    pngs = dataset_previews(tiny_phantom, tmp_path / "preview")
    assert len(pngs) == len(tiny_phantom["subjects"])
    for png in pngs:
        data = Path(png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000


def test_participant_label_takes_several_values_after_one_flag():
    from pseudohealthy.cli.main import expand_multi_value_options as expand

    assert expand(["detect", "B", "O", "participant", "--participant-label", "01", "sub-02", "--model", "M"]) == [
        "detect", "B", "O", "participant", "--participant-label", "01", "--participant-label", "sub-02",
        "--model", "M"]
    assert expand(["prepare", "B", "W", "--participant-label", "1", "--participant-label", "2"]) == [
        "prepare", "B", "W", "--participant-label", "1", "--participant-label", "2"]
    assert expand(["prepare", "B", "W", "--participant-label"]) == ["prepare", "B", "W", "--participant-label"]


def test_readme_participant_label_form_runs(tiny_bids, tmp_path):
    """The README's form (several labels after one flag) reaches the inventory: unknown labels are named."""
    out = _run("prepare", str(tiny_bids), str(tmp_path / "w"), "--participant-label", "00001", "99998", "99999")
    assert out.returncode == 2 and "unexpected extra argument" not in out.stderr
    assert "99998" in out.stderr and "Traceback" not in out.stderr


def test_device_auto_cpu_and_unavailable_cuda():
    import pytest
    import torch

    from pseudohealthy.devices import resolve_device
    from pseudohealthy.errors import UserError

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(UserError, match="use auto, cpu, cuda"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_prepare_dry_run_reports_and_writes_nothing(tiny_bids, tiny_phantom, tmp_path):
    work = tmp_path / "work"
    out = _run("prepare", str(tiny_bids), str(work), "--dry-run")
    text = " ".join(out.stderr.split())
    assert out.returncode == 0, out.stderr
    assert f"would prepare {len(tiny_phantom['subjects'])} subject(s), skip 0" in text
    assert "Nothing was computed or written" in text and not work.exists()
    for subject in tiny_phantom["subjects"]:
        assert subject["participant_id"] in out.stderr


def test_bids_validation_errors_come_in_one_block_and_can_be_skipped(tiny_bids, tmp_path):
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(tiny_bids, bids)
    anat = next(bids.glob("sub-*/anat"))
    stray = anat / f"{anat.parent.name}_T1w_copy.nii.gz"  # not a BIDS name
    shutil.copy(next(anat.glob("*_T1w.nii.gz")), stray)
    out = _run("prepare", str(bids), str(tmp_path / "w"), "--dry-run")
    text = out.stderr.replace("\n", " ")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "not valid BIDS" in text and "NOT_INCLUDED" in text and stray.name in text
    assert "--skip-bids-validation" in text
    skipped = _run("prepare", str(bids), str(tmp_path / "w"), "--dry-run", "--skip-bids-validation")
    assert skipped.returncode == 0 and "would prepare" in skipped.stderr.replace("\n", " ")
    assert _run("prepare", str(tiny_bids), str(tmp_path / "w"), "--dry-run").returncode == 0  # the phantom is valid
