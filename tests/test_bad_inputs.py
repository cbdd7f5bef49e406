"""Bad inputs give one clear line naming the file or subject, a non-zero exit, and no traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from helpers import copy_dataset, tree_digest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pseudohealthy", *args], capture_output=True, text=True,
                          timeout=300)


def _subject(truth: dict, group: str) -> dict:
    return next(s for s in truth["subjects"] if s["group"] == group)


def _file(bids: Path, subject: dict, kind: str) -> Path:
    pid, plan = subject["participant_id"], subject["plan"]
    names = {"t1": f"{pid}_acq-{plan['t1_acq']}_T1w.nii.gz", "flair": f"{pid}_acq-{plan['flair_acq']}_FLAIR.nii.gz",
             "mask": f"{pid}_acq-{plan['mask_acq']}_FLAIR_roi.nii.gz"}
    return bids / pid / "anat" / names[kind]


def _resave(path: Path, data=None, affine=None) -> None:
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) if data is None else data,
                             img.affine if affine is None else affine), path)


def _edit_tsv(bids: Path, pid: str, column: str, value: str) -> None:
    path = bids / "participants.tsv"
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    header = lines[0].split("\t")
    for i, line in enumerate(lines):
        if line.startswith(pid + "\t"):
            cells = line.rstrip("\r").split("\t")
            cells[header.index(column)] = value
            lines[i] = "\t".join(cells)
    path.write_text("\n".join(lines), encoding="utf-8-sig")


def _damage(case: str, bids: Path, truth: dict) -> tuple[str, list[str]]:
    """Damage the dataset; return the subject to run on and the phrases the message must contain."""
    ctrl, pat = _subject(truth, "hc"), _subject(truth, "fcd")
    c_t1, c_fl = _file(bids, ctrl, "t1"), _file(bids, ctrl, "flair")
    p_mask = _file(bids, pat, "mask")
    cid, ppid = ctrl["participant_id"], pat["participant_id"]
    if case == "missing T1":
        c_t1.unlink()
        return cid, [cid, "no T1w image"]
    if case == "missing FLAIR":
        c_fl.unlink()
        return cid, [cid, "no FLAIR image"]
    if case == "only 2D FLAIR":
        img = nib.load(c_fl)
        thick = bids / cid / "anat" / f"{cid}_acq-tra4mm_FLAIR.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, ::4], img.affine @ np.diag([1, 1, 4, 1])), thick)
        c_fl.unlink()
        return cid, [thick.name, "--allow-2d-flair"]
    if case == "truncated gz":
        c_t1.write_bytes(c_t1.read_bytes()[:5000])
        return cid, [c_t1.name, "corrupt"]
    if case == "not NIfTI":
        c_t1.write_bytes(gzip.compress(b"this is a text file, not an image"))
        return cid, [c_t1.name, "not NIfTI"]
    if case == "4D image":
        data = np.asarray(nib.load(c_t1).dataobj)
        _resave(c_t1, np.stack([data, data], axis=-1))
        return cid, [c_t1.name, "4 dimensions"]
    if case == "NaN voxels":
        data = np.asarray(nib.load(c_fl).dataobj).astype(np.float32)
        data[5, 5, 5] = np.nan
        _resave(c_fl, data)
        return cid, [c_fl.name, "NaN/Inf"]
    if case == "Inf voxels":
        data = np.asarray(nib.load(c_t1).dataobj).astype(np.float32)
        data[5, 5, 5] = np.inf
        _resave(c_t1, data)
        return cid, [c_t1.name, "NaN/Inf"]
    if case == "all zero":
        _resave(c_t1, np.zeros(nib.load(c_t1).shape, np.int16))
        return cid, [c_t1.name, "all zeros"]
    if case == "absurd voxel size":
        _resave(c_t1, affine=nib.load(c_t1).affine @ np.diag([0.01, 0.01, 0.01, 1]))
        return cid, [c_t1.name, "absurd voxel sizes"]
    if case == "singular affine":
        img = nib.load(c_t1)
        hdr = img.header.copy()
        raw = nib.Nifti1Image(np.asarray(img.dataobj), None, hdr)
        raw.set_sform(np.zeros((4, 4)), code=1)
        raw.set_qform(None, code=0)
        nib.save(raw, c_t1)
        return cid, [c_t1.name, "affine"]
    if case == "no overlap":
        _resave(c_t1, affine=nib.load(c_t1).affine + np.array([[0, 0, 0, 900.0], [0] * 4, [0] * 4, [0] * 4]))
        return cid, [c_t1.name, "overlap"]
    if case == "mask on another grid":
        img = nib.load(p_mask)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::2, ::2, ::2], img.affine @ np.diag([2, 2, 2, 1])), p_mask)
        return ppid, [p_mask.name, "another grid"]
    if case == "non-binary mask":
        _resave(p_mask, (np.asarray(nib.load(p_mask).dataobj) * 3).astype(np.uint8))
        return ppid, [p_mask.name, "not binary"]
    if case == "empty mask":
        _resave(p_mask, np.zeros(nib.load(p_mask).shape, np.uint8))
        return ppid, [p_mask.name, "empty"]
    if case == "unknown lobe":
        _edit_tsv(bids, ppid, "lobe", "XL")
        return ppid, [ppid, "unknown lobe 'XL'"]
    if case == "unknown group":
        _edit_tsv(bids, cid, "group", "patient?")
        return cid, [cid, "neither 'fcd' nor 'hc'"]
    if case == "participants.tsv missing":
        (bids / "participants.tsv").unlink()
        return cid, ["participants.tsv not found"]
    if case == "no participant_id column":
        path = bids / "participants.tsv"
        path.write_text(path.read_text(encoding="utf-8-sig").replace("participant_id", "subject", 1))
        return cid, ["participant_id", "column"]
    if case == "duplicate ids":
        path = bids / "participants.tsv"
        text = path.read_text(encoding="utf-8-sig")
        path.write_text(text + text.split("\n")[1].rstrip("\r") + "\n", encoding="utf-8-sig")
        return cid, ["appears twice"]
    raise AssertionError(case)


CASES = ["missing T1", "missing FLAIR", "only 2D FLAIR", "truncated gz", "not NIfTI", "4D image", "NaN voxels",
         "Inf voxels", "all zero", "absurd voxel size", "singular affine", "no overlap", "mask on another grid",
         "non-binary mask", "empty mask", "unknown lobe", "unknown group", "participants.tsv missing",
         "no participant_id column", "duplicate ids"]


@pytest.mark.parametrize("case", CASES)
def test_prepare_rejects_bad_input_clearly(case, tiny_bids, tiny_phantom, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    pid, phrases = _damage(case, bids, tiny_phantom)
    before = tree_digest(bids)
    # The reader's own checks are what is tested here (the validator has its own test).
    out = _run("prepare", str(bids), str(tmp_path / "work"), "--participant-label", pid, "--jobs", "1",
               "--skip-bids-validation")
    message = out.stderr.replace("\n", " ")
    assert out.returncode == 2, (case, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    error_lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, out.stderr
    for phrase in phrases:
        assert phrase in message, (case, phrase, message)
    assert tree_digest(bids) == before  # the input is never modified


def test_cli_level_mistakes(tiny_bids, tmp_path):
    cases = [
        (["prepare", str(tiny_bids), str(tmp_path / "w"), "--participant-label", "../../x"], "not a valid BIDS label"),
        (["prepare", str(tiny_bids), str(tiny_bids / "work")], "inside BIDS_DIR"),
        (["prepare", str(tmp_path / "nope"), str(tmp_path / "w")], "BIDS folder not found"),
    ]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases.append((["prepare", str(tiny_bids), str(a_file)], "is a file"))
    bad_preset = tmp_path / "preset.yaml"
    data = yaml.safe_load((Path(__file__).parents[1] / "src/pseudohealthy/config/presets/quick.yaml").read_text())
    data["data"]["image_sise"] = data["data"].pop("image_size")
    bad_preset.write_text(yaml.safe_dump(data))
    cases.append((["prepare", str(tiny_bids), str(tmp_path / "w2"), "--preset", str(bad_preset)],
                  "did you mean 'image_size'"))
    cases.append((["detect", str(tiny_bids), str(tmp_path / "o"), "participant", "--model", str(tmp_path / "none")],
                  "none: not found"))
    cases.append((["detect", str(tiny_bids), str(tmp_path / "o"), "group", "--model", str(tmp_path)],
                  "analysis level 'group'"))
    for args, phrase in cases:
        out = _run(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr[-1500:])
        assert phrase in out.stderr.replace("\n", " "), (args, out.stderr)
    assert not (tiny_bids / "work").exists()
