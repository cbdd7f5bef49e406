"""``pseudohealthy demo``: the main job end to end on a synthetic dataset, then its headline figures."""

from __future__ import annotations

import time
from pathlib import Path

from pseudohealthy import workdir
from pseudohealthy.cli.steps import (
    console,
    print_figures,
    run_calibrate,
    run_detect,
    run_phantom,
    run_prepare,
    run_train,
)


def run_demo(work_dir: Path, patients: int, controls: int, seed: int, jobs: int) -> None:
    """phantom -> prepare -> train -> calibrate -> detect in WORK_DIR (steps finished earlier are reused), then
    the figures of the test subjects' derivatives, printed and written to derivatives/demo_summary.json."""
    from pseudohealthy.data.bids import unit_subject
    from pseudohealthy.data.splits import read_splits

    start = time.perf_counter()
    work_dir = Path(work_dir)
    bids = work_dir / "bids"
    truth_dir = work_dir / "bids_truth"
    if (truth_dir / "truth.json").is_file() and bids.is_dir():
        console.print(f"[cyan]phantom[/]: reusing {bids}")
    else:
        run_phantom(bids, patients, controls, seed, jobs, True, truth_dir, overwrite=True)
    model_dir = work_dir / "model"
    run_prepare(bids, model_dir, "quick", None, jobs)
    for kind in ("classifier", "translator"):  # resume: continue a checkpoint if there is one, else start
        run_train(model_dir, kind, None, resume=True, device="cpu")
    run_calibrate(model_dir, "cpu")
    test_ids = sorted({unit_subject(unit) for unit, _, role in read_splits(model_dir) if role == "test"})
    out_dir = work_dir / "derivatives"
    results = run_detect(bids, out_dir, model_dir, test_ids, overwrite=True)
    _print_summary(results, model_dir, out_dir, time.perf_counter() - start)


def _print_summary(results: list[dict], model_dir: Path, out_dir: Path, seconds: float) -> None:
    """The demo's figures: from the derivatives it wrote and on the template grid, kept in demo_summary.json."""
    from pseudohealthy.anomaly.clusters import ClusterSettings
    from pseudohealthy.config import load_config
    from pseudohealthy.evaluation.native_scores import score_unit, summarise_outputs
    from pseudohealthy.evaluation.run import template_score
    from pseudohealthy.evaluation.template_scores import summarise_method
    from pseudohealthy.io.atomic import write_json_atomic
    from pseudohealthy.models.trained import load_calibration

    cfg = load_config(workdir.config_file(model_dir))
    clusters = ClusterSettings.of(load_calibration(model_dir))  # what detect clustered with
    template = summarise_method([template_score(model_dir, r["participant_id"], r["maps"], clusters, cfg)
                                 for r in results], n_resamples=0)
    outputs = summarise_outputs([score_unit(out_dir, r["participant_id"], r["lesion_mask"] and Path(r["lesion_mask"]))
                                 for r in results])
    summary = {"outputs": outputs, "template_grid": template, "seconds": round(seconds)}
    write_json_atomic(out_dir / "demo_summary.json", summary)
    console.print(f"[bold]demo finished[/] in {seconds / 60:.1f} min. Report: {out_dir / 'index.html'}")
    print_figures(summary)
    console.print(f"figures in {out_dir / 'demo_summary.json'}")
