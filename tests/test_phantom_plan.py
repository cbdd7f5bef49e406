"""Dataset planning and participants.tsv, without rendering images."""

from collections import Counter

import pytest

from pseudohealthy.errors import UserError
from pseudohealthy.phantom.dataset import LOBE_FREQUENCIES, participants_tsv, plan_dataset
from pseudohealthy.phantom.realism import LEGACY


def test_plan_is_deterministic_and_seed_dependent():
    assert plan_dataset(5, 4, seed=3) == plan_dataset(5, 4, seed=3)
    assert plan_dataset(5, 4, seed=3) != plan_dataset(5, 4, seed=4)


def test_groups_splits_and_quirks():
    plans = plan_dataset(9, 6, seed=1)
    assert Counter(p.group for p in plans) == {"fcd": 9, "hc": 6}
    patients = [p for p in plans if p.group == "fcd"]
    assert sum(p.split == "test" for p in patients) == 3  # a third, as in ds004199 (28 of 85)
    assert all(p.split == "train" for p in plans if p.group == "hc")
    assert all(p.lesion is None and p.mask_acq is None for p in plans if p.group == "hc")
    mismatched = [p for p in patients if p.mask_acq != p.flair_acq]
    assert len(mismatched) == 1
    assert sum(p.thick_flair_acq is not None for p in plans) == 1
    for p in patients:
        assert p.lobe in LOBE_FREQUENCIES and p.lesion.hemisphere in {"L", "R"}
        assert p.histopathology in {"FCD IIa", "FCD IIb"}
        assert p.lesion.transmantle is False or p.histopathology == "FCD IIb"


def test_lobe_frequencies_follow_the_reference_dataset():
    plans = plan_dataset(400, 0, seed=0)
    counts = Counter(p.lobe for p in plans)
    assert counts.most_common(1)[0][0] == "FL"
    assert 0.5 < counts["FL"] / 400 < 0.77  # 54 / 85 = 0.64


def test_participants_tsv_quirks():
    plans = plan_dataset(3, 3, seed=2)
    text = participants_tsv(plans)
    lines = text.split("\n")
    assert lines[0].split("\t") == ["participant_id", "age", "sex", "group", "hemisphere", "lobe",
                                    "histopathology", "split"]
    assert "\r\n" in text and text.count("\r\n") < len(plans)  # some rows, not all
    for p in plans:
        row = next(line for line in lines if line.startswith(p.participant_id)).rstrip("\r").split("\t")
        if p.group == "hc":
            assert row[4:7] == ["n/a", "n/a", "n/a"]
        else:
            assert row[5] == p.lobe


def test_empty_dataset_is_a_user_error():
    with pytest.raises(UserError):
        plan_dataset(0, 0, seed=0)


def test_a_share_of_test_patients_gets_small_faint_lesions_and_nothing_else_changes():
    from pseudohealthy.phantom.dataset import SUBTLE_CONTRAST, SUBTLE_RADIUS_MM

    plain = plan_dataset(30, 20, seed=2, realism=LEGACY)
    subtle = plan_dataset(30, 20, seed=2, subtle_test_share=0.34, realism=LEGACY)
    changed = [(a, b) for a, b in zip(plain, subtle, strict=True) if a != b]
    assert len(changed) == 4  # ceil(0.34 * 10 test patients)
    for before, after in changed:
        assert after.split == "test" and before.lesion.lobes == after.lesion.lobes
        assert SUBTLE_RADIUS_MM[0] <= after.lesion.radius_mm <= SUBTLE_RADIUS_MM[1]
        assert SUBTLE_CONTRAST[0] <= after.lesion.contrast <= SUBTLE_CONTRAST[1]
        assert (before.participant_id, before.histopathology, before.t1_acq) == (
            after.participant_id, after.histopathology, after.t1_acq)
    with pytest.raises(UserError):
        plan_dataset(3, 3, seed=0, subtle_test_share=1.5)


def test_test_share_sets_the_number_of_test_patients_and_nothing_else():
    third, half = plan_dataset(30, 20, seed=2, realism=LEGACY), plan_dataset(30, 20, seed=2, test_share=0.5,
                                                                              realism=LEGACY)
    assert sum(p.split == "test" for p in third) == 10 and sum(p.split == "test" for p in half) == 15
    assert {p.participant_id for p in third if p.split == "test"} < {p.participant_id for p in half
                                                                      if p.split == "test"}
    for a, b in zip(third, half, strict=True):
        assert (a.group, a.lesion, a.t1_acq, a.flair_acq, a.age) == (b.group, b.lesion, b.t1_acq, b.flair_acq, b.age)
    with pytest.raises(UserError):
        plan_dataset(3, 3, seed=0, test_share=-0.1)
