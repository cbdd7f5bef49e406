"""The speed split of `benchmarks/bench_detect.py` resumes by (run, seed) after an interruption."""

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
