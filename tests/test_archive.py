"""A trained model as one file: export, open elsewhere, same maps; every damaged or foreign archive is
refused with one line naming the fault, and nothing in it is unpickled as code."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pseudohealthy.bundle.archive import MANIFEST, export_model, opened_model, verify_archive
from pseudohealthy.data.bids import build_inventory
from pseudohealthy.detect.run import detect_pair
from pseudohealthy.errors import UserError


@pytest.fixture(scope="module")
def archive(trained, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "model.zip"
    export_model(trained, path)
    return path


def _rewrite(source: Path, dest: Path, change) -> Path:
    """A copy of ``source`` whose members pass through ``change(name, data) -> data | None`` (None: drop)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w") as zout:
        for name in zin.namelist():
            data = change(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
    return dest


def _with_manifest(source: Path, dest: Path, edit) -> Path:
    def change(name, data):
        if name == MANIFEST:
            manifest = json.loads(data)
            edit(manifest)
            return json.dumps(manifest).encode()
        return data
    return _rewrite(source, dest, change)


def test_archive_holds_config_calibration_weights_card_and_checksums(trained, archive):
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read(MANIFEST))
        card = json.loads(zf.read("model_card.json"))
        ckpt = torch.load(io.BytesIO(zf.read("models/translator-t500/checkpoint.pt")), weights_only=True)
    assert {"config.yaml", "calibration.json", "model_card.json", "MODEL_CARD.md",
            "models/translator-t500/checkpoint.pt", "models/classifier/checkpoint.pt"} <= names
    assert set(manifest["files"]) == names - {MANIFEST}
    assert "ema" in ckpt and "optimizer" not in ckpt and "model" not in ckpt  # EMA weights only
    assert card["networks"]["translator-t500"]["steps"] == 3 and card["method"]["samples"] == 2
    assert card["training_data"]["source"]["synthetic"] is True
    rows = [line.split("\t") for line in (trained / "splits.tsv").read_text().splitlines()[1:]]
    assert card["training_data"]["subjects"]["train patients"] == sum(r[1:3] == ["fcd", "train"] for r in rows)
    assert verify_archive(archive)["format"] == manifest["format"]


def test_exported_model_gives_the_same_maps_as_its_work_folder(trained, archive, tiny_bids, tmp_path):
    subject = build_inventory(tiny_bids).subjects[0]
    direct = detect_pair(subject.t1w, subject.flair, tmp_path / "direct", trained, "sub-01")
    with opened_model(archive) as unpacked:
        packed = detect_pair(subject.t1w, subject.flair, tmp_path / "packed", unpacked, "sub-01")
        assert unpacked.is_dir()
    assert not unpacked.exists()  # the temporary folder is removed
    assert direct["clusters"] == packed["clusters"]
    for folder in ("direct", "packed"):
        assert (tmp_path / folder / "sub-01.html").is_file()
    maps = [np.asarray(nib.load(next((tmp_path / f / "sub-01" / "anat").glob("*desc-anomaly_probseg.nii.gz"))).dataobj)
            for f in ("direct", "packed")]
    np.testing.assert_array_equal(maps[0], maps[1])
    assert "trained on synthetic phantom data" in (tmp_path / "packed" / "sub-01.html").read_text()


def test_damaged_archive_is_refused(archive, tmp_path):
    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match="not a readable zip"):
        verify_archive(cut)


def test_checksum_mismatch_is_refused(archive, tmp_path):
    altered = _rewrite(archive, tmp_path / "altered.zip",
                       lambda name, data: data.replace(b"threshold", b"thresholx") if name == "calibration.json" else data)
    with pytest.raises(UserError, match="checksum mismatch for calibration.json"):
        verify_archive(altered)


def test_archive_from_another_package_version_is_refused(archive, tmp_path):
    old = _with_manifest(archive, tmp_path / "old.zip", lambda m: m.update(package_version="9.1.0"))
    with pytest.raises(UserError, match="made by pseudohealthy 9.1.0"):
        verify_archive(old)


class _Payload:
    def __reduce__(self):  # what a malicious checkpoint would run when unpickled
        return (print, ("unpickled code ran",))


def test_archive_with_pickled_code_is_refused_without_running_it(archive, tmp_path, capsys):
    buffer = io.BytesIO()
    torch.save({"format": "pseudohealthy-checkpoint-1", "ema": _Payload()}, buffer)
    evil_bytes = buffer.getvalue()
    import hashlib

    def change(name, data):
        if name == "models/translator-t500/checkpoint.pt":
            return evil_bytes
        if name == MANIFEST:
            manifest = json.loads(data)
            manifest["files"]["models/translator-t500/checkpoint.pt"] = hashlib.sha256(evil_bytes).hexdigest()
            return json.dumps(manifest).encode()
        return data

    evil = _rewrite(archive, tmp_path / "evil.zip", change)
    with pytest.raises(UserError, match="holds more than plain tensors"):
        verify_archive(evil)
    assert "unpickled code ran" not in capsys.readouterr().out


def test_not_an_archive_and_unlisted_files_are_refused(archive, tmp_path):
    stray = _rewrite(archive, tmp_path / "stray.zip", lambda name, data: data)
    with zipfile.ZipFile(stray, "a") as zf:
        zf.writestr("extra.py", "print('hi')")
    with pytest.raises(UserError, match="does not list"):
        verify_archive(stray)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(UserError, match="not a pseudohealthy model archive"):
        verify_archive(plain)


def test_cli_export_and_a_damaged_archive_give_one_line(trained, archive, tiny_bids, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "pseudohealthy", *a], capture_output=True, text=True,
                                    timeout=600)
    out = run("export-model", str(trained), str(tmp_path / "m.zip"))
    assert out.returncode == 0 and (tmp_path / "m.zip").is_file(), out.stderr
    again = run("export-model", str(trained), str(tmp_path / "m.zip"))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[:1000])
    subject = build_inventory(tiny_bids).subjects[0]
    out = run("detect-pair", str(subject.t1w), str(subject.flair), str(tmp_path / "out"), "--model", str(cut))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(lines) <= 2  # one (wrapped) line
    assert "not a readable zip" in out.stderr.replace("\n", " ")
    assert not (tmp_path / "out" / "sub-01").exists()
