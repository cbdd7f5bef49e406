"""Quality against compute on the development set (`make bench-budget`): does the gap to FLAIR brightness
close with more translator training, and with finer slices?

For each grid (3 mm / 64 px: the development work folder; 2 mm / 96 px: the same phantom prepared again) the
translator is trained once, continuing from one budget to the next (training resumes exactly, so the
checkpoint at 2 560 steps of a 10 240-step run is the 2 560-step model); the classifier keeps its preset
budget. Each budget's translator is scored by ``dev_signal.py``'s code at ``--settings`` (seeds, draws and
thresholds as there), beside the FLAIR z-score of the same grid. Every finished point is written at once and
skipped when the script is started again. Results: benchmarks/results/dev_budget.json, docs/budget.png.

Usage: python benchmarks/bench_budget.py DEV_DIR [--steps 640 2560 10240] [--fine-steps 640 2560]
       [--settings "diffusion.samples=1 ..."] [--seeds 0 1] [--set train_translator.max_timestep=500 ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from common import earlier_result, provenance, write_result
from dev_signal import Variant, run_variant, summarise
from dev_workdirs import share

from pseudohealthy.config import load_work_config, with_overrides
from pseudohealthy.evaluation.run import parse_settings
from pseudohealthy.data.prepare import prepare
from pseudohealthy.models.trained import model_dir
from pseudohealthy.training.trainer import train

GRIDS = {"3mm": None, "2mm": {"template_voxel_mm": 2.0, "image_size": 96}}
FLAIR_ZSCORE = "method.detector=flair_zscore method.histogram_matching=none method.guidance=none method.normative=false"


def prepared(dev: Path, grid: str) -> Path:
    """The development work folder on ``grid`` (prepared here for the 2 mm grid when missing, with the
    3 mm folder's settings but for the grid, so the two grids differ in nothing else)."""
    base = dev / "model"
    if GRIDS[grid] is None:
        return base
    work = dev / f"model-{grid}"
    if not (work / "splits.tsv").is_file():
        prepare(dev / "bids", work, with_overrides(load_work_config(base), {"data": GRIDS[grid]}), jobs=2)
    return work


def _same_config(folder: Path, base: Path, settings: list[str]) -> None:
    """A folder left by an earlier run must hold ``base``'s config with ``settings``, or its networks measure
    something else."""
    if load_work_config(folder) != with_overrides(load_work_config(base), parse_settings(settings)):
        sys.exit(f"{folder}: made with other settings than --set {settings}; move it away to train it again")


def trained_point(base: Path, dev: Path, grid: str, steps: int, settings: list[str]) -> Path:
    """A work folder sharing ``base``'s data whose translator was trained for ``steps`` (continuing the grid's
    run) and whose classifier is the grid's preset-budget one; ``settings`` (``SECTION.KEY=VALUE``) change the
    work folder's config for training and scoring alike (e.g. the translator's t range of a folder prepared
    before the preset changed)."""
    runner = dev / f"budget-{grid}"
    if not runner.exists():
        share(base, runner, settings)
    _same_config(runner, base, settings)
    cfg = load_work_config(runner)
    for kind, iterations in (("classifier", None), ("translator", steps)):
        checkpoint = model_dir(runner, kind, cfg) / "checkpoint.pt"
        if kind == "classifier" and checkpoint.is_file():
            continue
        train(runner, cfg, kind, resume=checkpoint.is_file(), iterations=iterations)
    point = dev / f"budget-{grid}-{steps}"
    if not point.exists():
        share(base, point, settings)
    _same_config(point, base, settings)
    for kind in ("translator", "classifier"):
        target = model_dir(point, kind, cfg)
        if not (target / "checkpoint.pt").is_file():  # a copy stopped half-way is made again
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(model_dir(runner, kind, cfg), target)
    return point


def point_variant(grid: str, steps: int, settings: str, point: Path) -> Variant:
    """The detection run that scores one budget point: named ``GRID-STEPS`` (one word: dev_signal's variants
    read every later word as a setting), with ``settings`` over the point's config."""
    return Variant(f"{grid}-{steps} {settings}", point)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev_dir", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[640, 2560, 10240])
    parser.add_argument("--fine-steps", type=int, nargs="+", default=[640, 2560])
    parser.add_argument("--settings", default="diffusion.samples=1",
                        help="detection overrides of every point (default: one draw per slice; on a GPU e.g. "
                             "'diffusion.samples=4')")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change the config the translators are trained and scored with; repeatable")
    args = parser.parse_args()
    result = earlier_result("dev_budget") or {"provenance": provenance(), "settings": args.settings,
                                              "set": args.set, "points": {}}
    if (result.get("settings"), result.get("set", [])) != (args.settings, args.set):
        sys.exit(f"benchmarks/results/dev_budget.json was made with --settings {result.get('settings')!r} and --set "
                 f"{result.get('set', [])}; move it away to start again with other settings")
    cache = args.dev_dir / "model" / "dev_signal" / "cache"
    for grid, budgets in (("3mm", args.steps), ("2mm", args.fine_steps)):
        base = prepared(args.dev_dir, grid)
        key = f"{grid} flair_zscore"
        if key not in result["points"]:
            variant = Variant(f"flair_zscore {FLAIR_ZSCORE}", base)
            result["points"][key] = summarise({s: run_variant(variant, s, cache, print) for s in args.seeds})
            write_result("dev_budget", result)
        for steps in sorted(budgets):
            key = f"{grid} {steps}"
            if key in result["points"]:
                continue
            point = trained_point(base, args.dev_dir, grid, steps, args.set)
            variant = point_variant(grid, steps, args.settings, point)
            result["points"][key] = summarise({s: run_variant(variant, s, cache, print) for s in args.seeds})
            write_result("dev_budget", result)
    figure(result)


def figure(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("auprc", "pooled AUPRC"), ("top3", "lesion in the top 3"), ("cnr_small_median", "CNR, lesions < 1 cm³"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (metric, title) in zip(axes, metrics):
        for grid, colour in (("3mm", "C0"), ("2mm", "C1")):
            points = sorted((int(k.split()[1]), v[metric]) for k, v in result["points"].items()
                            if k.startswith(grid) and k.split()[1].isdigit())
            if points:
                steps, values = zip(*points)
                ax.errorbar(steps, [v[0] for v in values], [v[1] for v in values], color=colour, marker="o",
                            label=f"ours, {grid}")
            reference = result["points"].get(f"{grid} flair_zscore")
            if reference:
                ax.axhline(reference[metric][0], color=colour, linestyle="--", label=f"FLAIR z-score, {grid}")
        ax.set_xscale("log")
        ax.set_xlabel("translator training steps")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(__file__).resolve().parents[1] / "docs" / "budget.png", dpi=110)


if __name__ == "__main__":
    main()
