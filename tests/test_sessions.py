"""Sessions (``sub-X/ses-Y/anat``): each session is its own unit of work and keeps its ``ses-`` entity."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy.config import load_config
from pseudohealthy.data.bids import build_inventory, unit_path
from pseudohealthy.data.splits import assign_roles
from pseudohealthy.data.validation import validate_bids
from pseudohealthy.detect.run import detect
from pseudohealthy.phantom.dataset import plan_dataset
from pseudohealthy.phantom.subject import render_subject

SESSIONS = ("ses-1", "ses-2")


def _with_sessions(tiny_bids: Path, root: Path, pid: str) -> Path:
    """A copy of the tiny dataset in which ``pid``'s scans lie in two session folders (ds004199 has none)."""
    bids = root / "bids"
    shutil.copytree(tiny_bids, bids)
    anat = bids / pid / "anat"
    for session in SESSIONS:
        (bids / pid / session / "anat").mkdir(parents=True)
        for path in anat.iterdir():
            shutil.copy2(path, bids / pid / session / "anat" / path.name.replace(f"{pid}_", f"{pid}_{session}_", 1))
    shutil.rmtree(anat)
    return bids


def _control(tiny_phantom: dict) -> str:
    return next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "hc")


def test_each_session_is_a_unit_with_its_own_files(tiny_bids, tiny_phantom, tmp_path):
    pid = _control(tiny_phantom)
    bids = _with_sessions(tiny_bids, tmp_path, pid)
    assert validate_bids(bids) >= 0  # still valid BIDS (raises on errors)
    inventory = build_inventory(bids)
    units = {s.unit: s for s in inventory.subjects}
    assert set(units) == {s["participant_id"] for s in tiny_phantom["subjects"] if s["participant_id"] != pid} | {
        f"{pid}_{session}" for session in SESSIONS}
    for session in SESSIONS:
        chosen = units[f"{pid}_{session}"]
        assert chosen.participant_id == pid and chosen.session == session
        assert chosen.flair.parent == bids / pid / session / "anat" and chosen.flair.name.startswith(f"{pid}_{session}_")
        assert unit_path(chosen.unit) == Path(pid) / session
    assert build_inventory(bids, [pid]).subjects[1].session == "ses-2"  # a label selects all its sessions


def test_sessions_take_their_subjects_role():
    cfg = load_config("quick").data
    subjects = [{"participant_id": f"sub-{i:02d}", "group": "fcd" if i < 10 else "hc", "split": "train"}
                for i in range(20)]
    by_subject = assign_roles(subjects, cfg, seed=3)
    units = [{**s, "participant_id": f"{s['participant_id']}_{ses}", "subject": s["participant_id"]}
             for s in subjects for ses in SESSIONS]
    by_unit = assign_roles(units, cfg, seed=3)
    assert by_unit == {f"{pid}_{ses}": role for pid, role in by_subject.items() for ses in SESSIONS}
    assert Counter(by_subject.values())["val"] >= 2  # the test is not trivially about one role


def test_detect_writes_each_session_with_its_entity(trained, tiny_bids, tiny_phantom, tmp_path):
    pid = _control(tiny_phantom)
    bids = _with_sessions(tiny_bids, tmp_path, pid)
    out = tmp_path / "derivatives"
    results = detect(bids, out, trained, [pid])
    assert sorted(r["participant_id"] for r in results) == [f"{pid}_{session}" for session in SESSIONS]
    for session in SESSIONS:
        flair = next((bids / pid / session / "anat").glob("*_FLAIR.nii.gz"))
        stem = flair.name.removesuffix("_FLAIR.nii.gz")
        probseg = out / pid / session / "anat" / f"{stem}_label-FCD_desc-anomaly_probseg.nii.gz"
        assert nib.load(probseg).shape == nib.load(flair).shape
        assert (out / f"{pid}_{session}.html").is_file()
        assert f"{pid}_{session}.html" in (out / "index.html").read_text()
    assert not (out / pid / "anat").exists()
    assert validate_bids(out) >= 0  # the derivatives with sessions are valid BIDS
    assert detect(bids, out, trained, [pid]) == []  # both sessions finished: skipped on a rerun


def test_phantom_rescans_one_control_in_two_sessions(tmp_path):
    plans = plan_dataset(8, 8, seed=0)
    twice = [p for p in plans if p.sessions == 2]
    assert len(twice) == 1 and twice[0].group == "hc"
    assert all(p.sessions == 1 for p in plan_dataset(2, 1, seed=0))
    truth = render_subject(twice[0], 0, tmp_path / "bids", tmp_path / "truth")
    pid = twice[0].participant_id
    t1s = [nib.load(next((tmp_path / "bids" / pid / s / "anat").glob(f"{pid}_{s}_acq-*_T1w.nii.gz"))) for s in SESSIONS]
    assert not (tmp_path / "bids" / pid / "anat").exists()
    assert set(truth["sessions"]) == set(SESSIONS) and truth["geometry"] == truth["sessions"]["ses-1"]["geometry"]
    poses = [np.asarray(truth["sessions"][s]["geometry"]["anatomical_to_t1w_world"]) for s in SESSIONS]
    assert not np.allclose(poses[0], poses[1])  # the head was placed anew
    assert t1s[0].shape == t1s[1].shape and not np.array_equal(np.asarray(t1s[0].dataobj), np.asarray(t1s[1].dataobj))
