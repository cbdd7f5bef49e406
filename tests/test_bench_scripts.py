"""Helpers of the benchmark scripts: the speed split of `bench_detect.py` resumes by (run, seed) after an
interruption; `bench_confounds.py` and `bench_budget.py` read their design and name their runs as intended."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_detect  # noqa: E402
import common  # noqa: E402

RUNS = {"ours": ("cfg-a", {}), "loop": ("cfg-b", {"steps": 100})}


@pytest.fixture
def timed_calls(tmp_path, monkeypatch):
    """Results go to tmp_path; every (run, seed) actually timed is recorded instead of running a model."""
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    calls = []

    def fake_timed(subjects, models, cfg, seed, **overrides):
        calls.append((cfg, seed))
        if len(calls) == fake_timed.fail_at:
            raise KeyboardInterrupt  # the session ends mid-run
        return {"seconds_per_subject": 1.0 + seed, "auprc": 0.5, "slices": 3, "seed": seed, **overrides}

    fake_timed.fail_at = None
    monkeypatch.setattr(bench_detect, "_timed", fake_timed)
    return calls, fake_timed


def _result(config="x"):
    return {"subjects": ["sub-1", "sub-2"], "config": config, "machine": {"cpus": 2}, "commit": "abc"}


def test_interrupted_split_keeps_finished_rows_and_resumes_the_rest(tmp_path, timed_calls):
    calls, fake = timed_calls
    fake.fail_at = 3  # ours seed 0, ours seed 1 finish; loop seed 0 is interrupted
    with pytest.raises(KeyboardInterrupt):
        bench_detect.speed_split([], None, RUNS, [0, 1], _result(), "split")
    stored = json.loads((tmp_path / "split.json").read_text())["speed_by_source"]
    assert stored["complete"] is False
    assert [r["seed"] for r in stored["runs"]["ours"]] == [0, 1]

    calls.clear()
    fake.fail_at = None
    split = bench_detect.speed_split([], None, RUNS, [0, 1], _result(), "split")
    assert calls == [("cfg-b", 0), ("cfg-b", 1)]  # only the loop's rows run again
    assert [r["seconds_per_subject"] for r in split["ours"]] == [1.0, 2.0]
    assert split["loop"][1] == {"seconds_per_subject": 2.0, "auprc": 0.5, "slices": 3, "seed": 1, "steps": 100,
                                "commit": "abc"}


def test_split_starts_over_when_config_or_subjects_differ(timed_calls):
    calls, _ = timed_calls
    bench_detect.speed_split([], None, RUNS, [0], _result(), "split")
    assert len(calls) == 2
    bench_detect.speed_split([], None, RUNS, [0, 2], _result(), "split")  # a new seed: one row per run
    assert calls[2:] == [("cfg-a", 2), ("cfg-b", 2)]
    bench_detect.speed_split([], None, RUNS, [0], _result(config="y"), "split")
    assert calls[4:] == [("cfg-a", 0), ("cfg-b", 0)]


def test_confound_costs_read_the_design_and_tabulate_each_row(tmp_path):
    """bench_confounds re-renders the development phantom from the arguments its truth.json records, and its
    table shows each finished (confound, method) and a dash for one not yet run."""
    import bench_confounds

    truth = {"seed": 3, "test_share": 0.5, "subtle_test_share": 0.5,
             "subjects": [{"participant_id": f"sub-{i:02d}", "group": "fcd" if i < 3 else "hc"} for i in range(5)]}
    (tmp_path / "bids_truth").mkdir()
    (tmp_path / "bids_truth" / "truth.json").write_text(json.dumps(truth))
    assert bench_confounds.design(tmp_path) == {"seed": 3, "test_share": 0.5, "subtle_test_share": 0.5,
                                                "n_patients": 3, "n_controls": 2}
    summary = {"auprc": [0.1234, 0.01], "top3": [0.25, 0.0], "cnr_median": [1.5, 0.1], "fp_per_control": [0.875, 0.1]}
    lines = bench_confounds.table({"rows": {"csf_inflow": {"flair_zscore": summary}}}).splitlines()
    assert lines[2] == "| csf_inflow | 0.123 / 0.25 / 1.50 / 0.88 | — | — |"
    also = {"also": {"ours_normative": "method.normative=true"},
            "rows": {"none": {"ours_normative": summary}, "csf_inflow": {"ours": summary}}}
    lines = bench_confounds.table(also).splitlines()  # a column added by --also, after ours
    assert "ours_normative: AUPRC" in lines[0].split("|")[5]
    assert lines[2:] == ["| none | — | — | — | 0.123 / 0.25 / 1.50 / 0.88 |",
                         "| csf_inflow | — | — | 0.123 / 0.25 / 1.50 / 0.88 | — |"]


def test_budget_points_are_named_in_one_word_with_their_settings(tmp_path):
    """dev_signal reads every word after a variant's name as SECTION.KEY=VALUE: a point's name must be one word."""
    import bench_budget

    variant = bench_budget.point_variant("3mm", 640, "diffusion.samples=1 diffusion.reinsert=true", tmp_path)
    assert variant.name == "3mm-640" and variant.work == tmp_path
    assert variant.overrides == {"diffusion": {"samples": 1, "reinsert": True}}
