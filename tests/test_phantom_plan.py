"""Dataset planning and participants.tsv, without rendering images."""

from collections import Counter
from dataclasses import replace

import pytest

from pseudohealthy.errors import UserError
from pseudohealthy.phantom.dataset import LOBE_FREQUENCIES, participants_tsv, plan_dataset
from pseudohealthy.phantom.realism import CONFOUNDS, LEGACY


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


# ---- the realistic plan (phantom/realism.py, fcd_range.py) ------------------------------------------------

# The phantoms the project makes (Makefile, demo): (patients, controls, seed, options).
PHANTOMS = {
    "demo": (8, 8, 0, {}),
    "benchmark (BENCH_SEED)": (30, 20, 4, {"subtle_test_share": 0.34}),
    "benchmark before session 14": (30, 20, 2, {"subtle_test_share": 0.34}),
    "development": (32, 24, 3, {"test_share": 0.5, "subtle_test_share": 0.5}),
    "demo-size, seed 4": (8, 8, 4, {}),
}


@pytest.mark.parametrize("name", PHANTOMS)
def test_every_test_split_holds_each_size_and_contrast_stratum_of_the_benchmark(name):
    from pseudohealthy.evaluation.native_scores import CONTRAST_STRATA, SIZE_STRATA
    from pseudohealthy.phantom.fcd_range import stratum

    patients, controls, seed, options = PHANTOMS[name]
    test = [p for p in plan_dataset(patients, controls, seed, **options) if p.split == "test"]
    assert {stratum(p.lesion.volume_cm3, SIZE_STRATA, cm3=True) for p in test} == {0, 1, 2}
    assert {stratum(p.lesion.flair_ratio, CONTRAST_STRATA) for p in test} == {0, 1, 2}


def test_intended_sizes_and_contrasts_lie_well_inside_the_strata_and_follow_histology():
    from pseudohealthy.evaluation.native_scores import CONTRAST_STRATA, SIZE_STRATA
    from pseudohealthy.phantom.fcd_range import CONTRAST_RANGES, FLAIR_RATIO_BY_HISTOLOGY, SIZE_RANGES_CM3

    for (lo, hi), (_, s_lo, s_hi) in zip(SIZE_RANGES_CM3, SIZE_STRATA, strict=True):
        assert s_lo * 1.15 <= lo * 1000 and hi * 1000 <= s_hi / 1.15  # room for the subject's brain size
    for (lo, hi), (_, s_lo, s_hi) in zip(CONTRAST_RANGES, CONTRAST_STRATA, strict=True):
        assert s_lo + 0.02 <= lo and hi <= s_hi - 0.02
    train = [p for p in plan_dataset(60, 0, seed=5) if p.split == "train"]
    for p in train:
        lo, hi = FLAIR_RATIO_BY_HISTOLOGY[p.histopathology]
        assert lo <= p.lesion.flair_ratio <= hi
    faint = sum(p.lesion.flair_ratio < 1.10 for p in train if p.histopathology == "FCD IIa")
    assert faint > 0.4 * sum(p.histopathology == "FCD IIa" for p in train)  # IIa: a small FLAIR change


def test_the_transmantle_sign_goes_with_a_conspicuous_iib_only():
    """A tail at contrast 1.12 would not be called a transmantle sign: it needs 1.15 or more."""
    plans = [p for p in plan_dataset(200, 0, seed=5) if p.lesion.transmantle]
    assert len(plans) > 40 and all(p.histopathology == "FCD IIb" and p.lesion.flair_ratio >= 1.15 for p in plans)


def test_the_realistic_plan_is_the_legacy_plan_with_graded_lesions_and_its_own_confounds():
    legacy, realistic = plan_dataset(30, 20, seed=2, realism=LEGACY), plan_dataset(30, 20, seed=2)
    own = {"lesion", "caps", "field_strength_t", "realism", "confounds", "always"}
    for a, b in zip(legacy, realistic, strict=True):
        assert {k: v for k, v in vars(a).items() if k not in own} == {k: v for k, v in vars(b).items() if k not in own}
        assert (a.lesion is None) == (b.lesion is None)
        if a.lesion:
            assert (a.lesion.lobes, a.lesion.hemisphere) == (b.lesion.lobes, b.lesion.hemisphere)
            assert b.lesion.volume_cm3 and b.lesion.flair_ratio and a.lesion.volume_cm3 is None
        assert b.realism == "realistic" and a.realism == "legacy" and a.confounds == ()


@pytest.mark.parametrize("option", [{"subtle_test_share": 0.34}, {"test_share": 0.5}])
def test_the_test_options_change_test_lesions_only_in_the_realistic_plan(option):
    """On the benchmark's plan: a patient who trains in both plans has the same plan, lesion included;
    every other subject differs at most in its split and its lesion."""
    plain, other = plan_dataset(30, 20, seed=2), plan_dataset(30, 20, seed=2, **option)
    for a, b in zip(plain, other, strict=True):
        if a.split == b.split == "train":
            assert a == b
        else:
            assert replace(a, split=b.split, lesion=b.lesion) == b
    test = [b for b in other if b.split == "test"]
    if "subtle_test_share" in option:  # the options do something: a third of the test lesions are faint and small
        assert sum(b.lesion.volume_cm3 < 1 and b.lesion.flair_ratio < 1.1 for b in test) >= 4
    else:
        assert len(test) == 15


def test_switching_one_confound_off_changes_nothing_else():
    from pseudohealthy.phantom.realism import Realism

    everything, no_field = plan_dataset(12, 12, seed=3), plan_dataset(12, 12, seed=3,
                                                                      realism=Realism(without=("field_strength",)))
    assert any(p.field_strength_t == 1.5 for p in everything)
    assert all(p.field_strength_t == 3.0 and "field_strength" not in p.confounds for p in no_field)
    for a, b in zip(everything, no_field, strict=True):
        assert {k: v for k, v in vars(a).items() if k not in ("field_strength_t", "confounds")} == {
            k: v for k, v in vars(b).items() if k not in ("field_strength_t", "confounds")}


def test_normal_variants_and_scanners_are_as_frequent_in_controls_as_in_patients():
    plans = plan_dataset(300, 300, seed=6)
    for group in ("fcd", "hc"):
        members = [p for p in plans if p.group == group]
        assert 0.83 < sum(p.caps for p in members) / len(members) < 0.97  # frontal caps: 90 %
        assert 0.18 < sum(p.field_strength_t == 1.5 for p in members) / len(members) < 0.32  # 25 % at 1.5 T


def test_a_subject_plan_defaults_to_the_realistic_phantom_as_the_realism_setting_does():
    from dataclasses import fields

    from pseudohealthy.phantom.realism import Realism
    from pseudohealthy.phantom.subject import SubjectPlan

    defaults = {f.name: f.default for f in fields(SubjectPlan)}
    assert (defaults["realism"], defaults["confounds"]) == (Realism().mode, Realism().confounds) == (
        "realistic", tuple(CONFOUNDS))
    assert all(p.realism == "legacy" and p.confounds == () for p in plan_dataset(3, 3, seed=0, realism=LEGACY))


def test_a_bad_realism_setting_is_a_user_error():
    from pseudohealthy.phantom.realism import Realism

    for bad in (dict(mode="photoreal"), dict(without=("gremlins",)), dict(without=("csf_inflow",),
                                                                          always=("csf_inflow",)),
                dict(mode="legacy", without=("csf_inflow",))):
        with pytest.raises(UserError):
            Realism(**bad)


def test_the_phantom_command_refuses_an_unknown_confound(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pseudohealthy", "phantom", str(tmp_path / "x"), "--without",
                          "gremlins"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown confound" in out.stderr and not (tmp_path / "x").exists()
