"""Subject-level splits, the slice cache and the prepare command."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import tree_digest
from pseudohealthy.config import load_config
from pseudohealthy.data.slices import open_slice_cache
from pseudohealthy.data.splits import assign_roles

CFG = load_config("quick").data


def _subjects(n_train_pat: int, n_test_pat: int, n_ctrl: int) -> list[dict]:
    out = [{"participant_id": f"sub-p{i:03d}", "group": "fcd", "split": "train"} for i in range(n_train_pat)]
    out += [{"participant_id": f"sub-t{i:03d}", "group": "fcd", "split": "test"} for i in range(n_test_pat)]
    out += [{"participant_id": f"sub-c{i:03d}", "group": "hc", "split": "train"} for i in range(n_ctrl)]
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 20), st.integers(0, 40), st.integers(0, 1000))
def test_split_rule_properties(n_train_pat, n_test_pat, n_ctrl, seed):
    subjects = _subjects(n_train_pat, n_test_pat, n_ctrl)
    roles = assign_roles(subjects, CFG, seed)
    assert roles == assign_roles(list(reversed(subjects)), CFG, seed)  # order of input does not matter
    assert set(roles) == {s["participant_id"] for s in subjects}
    for s in subjects:
        if s["split"] == "test":
            assert roles[s["participant_id"]] == "test"
    val_pat = [p for p, r in roles.items() if r == "val" and p.startswith("sub-p")]
    if n_train_pat >= 2:
        assert 1 <= len(val_pat) < n_train_pat
    ctrl_roles = [roles[f"sub-c{i:03d}"] for i in range(n_ctrl)]
    if n_ctrl >= 3:
        assert ctrl_roles.count("val") >= 1 and ctrl_roles.count("test") >= 1 and ctrl_roles.count("train") >= 1


def test_slice_cache_matches_the_volumes(tiny_prepared, tiny_phantom):
    cache = open_slice_cache(tiny_prepared)
    n = len(cache.index)
    assert n > 0 and all(a.shape == (n, 64, 64) for a in cache.arrays.values())
    roles = dict(line.split("\t")[::2] for line in (tiny_prepared / "splits.tsv").read_text().splitlines()[1:])
    for row_i, row in enumerate(cache.index):
        sdir = tiny_prepared / "subjects" / row["participant_id"]
        flair = np.asarray(nib.load(sdir / "flair.nii.gz").dataobj)[:, :, row["z"]]
        lesion = np.asarray(nib.load(sdir / "lesion.nii.gz").dataobj)[:, :, row["z"]] > 0.5
        np.testing.assert_array_equal(cache.arrays["flair"][row_i], flair)
        assert row["lesion_pixels"] == lesion.sum()
        assert row["role"] == roles[row["participant_id"]]
        if row["group"] == "hc" or not lesion.any():
            assert row["label"] == 0
        else:
            assert row["label"] > 0
    assert any(r["label"] > 0 for r in cache.index)
    for subject in tiny_phantom["subjects"]:
        if subject["group"] == "fcd":
            assert any(r["label"] > 0 for r in cache.index if r["participant_id"] == subject["participant_id"])


def test_prepare_writes_outputs_and_resumes_without_touching_bids(tiny_bids, tiny_prepared, tmp_path):
    for name in ("config.yaml", "inventory.tsv", "splits.tsv", "slices/index.tsv"):
        assert (tiny_prepared / name).is_file(), name
    assert len(list((tiny_prepared / "qc").glob("*_registration.png"))) == 3
    before = tree_digest(tiny_bids)
    out = subprocess.run([sys.executable, "-m", "pseudohealthy", "prepare", str(tiny_bids), str(tiny_prepared)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "reused 3" in out.stderr.replace("\n", " ")
    assert tree_digest(tiny_bids) == before


@pytest.mark.parametrize("where", ["inside", "other-preset"])
def test_prepare_refuses_bad_work_dirs(tiny_bids, tiny_prepared, where):
    work = tiny_bids / "derivatives" / "x" if where == "inside" else tiny_prepared
    args = ["prepare", str(tiny_bids), str(work)] + (["--preset", "paper"] if where == "other-preset" else [])
    out = subprocess.run([sys.executable, "-m", "pseudohealthy", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert ("inside BIDS_DIR" if where == "inside" else "other data settings") in out.stderr.replace("\n", " ")
    assert not (tiny_bids / "derivatives").exists()
