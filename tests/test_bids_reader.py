"""Reading BIDS datasets in ds004199's layout, and clear reasons for unusable subjects."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from helpers import copy_dataset
from pseudohealthy.data.bids import SubjectSkipped, build_inventory, normalise_labels, read_participants
from pseudohealthy.data.labels import UnknownLobeError, lobe_class
from pseudohealthy.errors import UserError


@pytest.mark.parametrize("text,expected", [("FL", 1), ("TL,OL", 2), ("FL,PL", 3), ("TL", 4), ("IL", 5),
                                           ("PL", 6), ("TL,PL", 7), ("OL", 8), ("ol, tl", 2), ("PL,FL", 3)])
def test_lobe_classes_match_the_papers_table(text, expected):
    assert lobe_class(text) == expected


def test_unknown_lobe_names_the_string():
    with pytest.raises(UnknownLobeError, match="'XL'"):
        lobe_class("XL")


def test_participants_with_bom_crlf_and_na(tmp_path):
    (tmp_path / "participants.tsv").write_bytes(
        "\ufeffparticipant_id\tgroup\tlobe\themisphere\tsplit\r\nsub-01\tfcd\tFL\tL\ttrain\r\n"
        "sub-02\thc\tn/a\tn/a\ttrain\n".encode("utf-8"))
    rows = read_participants(tmp_path)
    assert list(rows) == ["sub-01", "sub-02"]
    assert rows["sub-01"].lobe == "FL" and rows["sub-01"].split == "train"
    assert rows["sub-02"].lobe is None and rows["sub-02"].group == "hc"


@pytest.mark.parametrize("content,message", [
    (None, "participants.tsv not found"),
    ("subject\tgroup\nsub-01\tfcd\n", "no 'participant_id' column"),
    ("participant_id\tgroup\nsub-01\tfcd\nsub-01\thc\n", "appears twice"),
    ("participant_id\tgroup\nsub-../x\tfcd\n", "invalid participant_id"),
])
def test_bad_participants_files(tmp_path, content, message):
    if content is not None:
        (tmp_path / "participants.tsv").write_text(content)
    with pytest.raises(UserError, match=message):
        read_participants(tmp_path)


def test_participant_labels_are_checked():
    assert normalise_labels(["01", "sub-02"]) == ["sub-01", "sub-02"]
    with pytest.raises(UserError, match="not a valid BIDS label"):
        normalise_labels(["../../x"])


def test_inventory_of_the_phantom(tiny_bids, tiny_phantom):
    inventory = build_inventory(tiny_bids)
    assert not inventory.skipped
    by_id = {s.participant_id: s for s in inventory.subjects}
    for subject in tiny_phantom["subjects"]:
        plan = subject["plan"]
        chosen = by_id[subject["participant_id"]]
        assert f"acq-{plan['flair_acq']}_FLAIR" in chosen.flair.name  # the 3D FLAIR, never the 2D one
        assert f"acq-{plan['t1_acq']}_T1w" in chosen.t1w.name
        if plan["group"] == "fcd":
            assert chosen.lesion_mask.name.endswith(f"acq-{plan['mask_acq']}_FLAIR_roi.nii.gz")
            assert chosen.label == lobe_class(",".join(plan["lesion"]["lobes"]))
        else:
            assert chosen.lesion_mask is None and chosen.label == 0
    assert any("another acq label" in n for s in inventory.subjects for n in s.notes)
    assert build_inventory(tiny_bids, ["sub-00002"]).subjects[0].participant_id == "sub-00002"
    with pytest.raises(UserError, match="no row for sub-99999"):
        build_inventory(tiny_bids, ["99999"])


def _patient(truth: dict) -> dict:
    return next(s for s in truth["subjects"] if s["group"] == "fcd")


def _anat(bids: Path, pid: str) -> Path:
    return bids / pid / "anat"


def test_missing_flair_is_reported(tiny_bids, tiny_phantom, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    pid = _patient(tiny_phantom)["participant_id"]
    for f in _anat(bids, pid).glob("*_FLAIR.nii.gz"):
        f.unlink()
    reason = build_inventory(bids).skipped[pid]
    assert "no FLAIR image" in reason and pid in reason


def test_2d_only_flair_needs_the_option(tiny_bids, tiny_phantom, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    subject = next(s for s in tiny_phantom["subjects"] if s["plan"]["thick_flair_acq"])
    pid, plan = subject["participant_id"], subject["plan"]
    (_anat(bids, pid) / f"{pid}_acq-{plan['flair_acq']}_FLAIR.nii.gz").unlink()
    reason = build_inventory(bids).skipped[pid]
    assert "only a thick-slice 2D FLAIR" in reason and "--allow-2d-flair" in reason
    if plan["group"] == "hc":  # a patient's mask is on the removed 3D FLAIR's grid
        chosen = next(s for s in build_inventory(bids, allow_2d_flair=True).subjects if s.participant_id == pid)
        assert "tra4mm" in chosen.flair.name and any("WARNING" in n for n in chosen.notes)


def test_mask_on_another_grid(tiny_bids, tiny_phantom, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    pid = _patient(tiny_phantom)["participant_id"]
    mask_path = next(_anat(bids, pid).glob("*_roi.nii.gz"))
    img = nib.load(mask_path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::2, ::2, ::2], img.affine @ np.diag([2, 2, 2, 1])), mask_path)
    reason = build_inventory(bids).skipped[pid]
    assert "another grid" in reason and mask_path.name in reason


def test_unknown_lobe_and_bad_group(tiny_bids, tiny_phantom, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    pid = _patient(tiny_phantom)["participant_id"]
    tsv = bids / "participants.tsv"
    lines = tsv.read_text(encoding="utf-8-sig").split("\n")
    header = lines[0].split("\t")
    for i, line in enumerate(lines):
        if line.startswith(pid):
            cells = line.split("\t")
            cells[header.index("lobe")] = "Frontal-ish"
            lines[i] = "\t".join(cells)
    tsv.write_text("\n".join(lines), encoding="utf-8-sig")
    reason = build_inventory(bids).skipped[pid]
    assert "unknown lobe 'Frontal-ish'" in reason


def test_nan_and_4d_inputs_are_rejected_with_the_file_named(tiny_bids, tiny_phantom, tmp_path):
    from pseudohealthy.config import load_config
    from pseudohealthy.data.preprocess import preprocess_subject

    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    cfg = load_config("quick").data
    control = next(s["participant_id"] for s in tiny_phantom["subjects"] if s["group"] == "hc")
    patient = _patient(tiny_phantom)["participant_id"]
    for pid in (control, patient):
        flair_path = build_inventory(bids, [pid]).subjects[0].flair
        img = nib.load(flair_path)
        data = np.asarray(img.dataobj).astype(np.float32)
        data[10, 10, 10] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), flair_path)
    # a control's FLAIR is first read by preprocessing, a patient's already by the mask check
    with pytest.raises(SubjectSkipped, match=r"sub-\d+_acq-\w+_FLAIR.nii.gz: .*FLAIR has 1 NaN/Inf voxels"):
        preprocess_subject(build_inventory(bids, [control]).subjects[0], cfg, tmp_path / "out")
    assert "NaN/Inf" in build_inventory(bids).skipped[patient]
    t1_path = build_inventory(bids, [control]).subjects[0].t1w
    t1 = nib.load(t1_path)
    nib.save(nib.Nifti1Image(np.stack([np.asarray(t1.dataobj)] * 2, axis=-1), t1.affine), t1_path)
    with pytest.raises(SubjectSkipped, match=f"{t1_path.name}: .*4 dimensions"):
        preprocess_subject(build_inventory(bids, [control]).subjects[0], cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "meta.json").exists()
