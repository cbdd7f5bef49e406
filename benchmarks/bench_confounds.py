"""What each confound of the realistic phantom costs whom (`make bench-confounds`; docs/phantom.md).

The development phantom (DEV_DIR/bids, made by `make dev-data`) is rendered again once per confound with
only that confound switched on (``phantom.realism.only``: the lesion model ``fcd_range`` stays on; "none":
no confound at all), from the same seed and design, so anatomy, lesions, head pose and noise are the same
in every one (each confound draws from a stream of its own). Each is prepared with the development set's
settings and scored on its development subjects, with thresholds chosen on its validation subjects, by
``dev_signal.py``'s code, for:

- ``flair_zscore``: the subject's own FLAIR z-score (no learning);
- ``control_zscore``: the FLAIR z-score against that phantom's training controls (no learning);
- ``ours``: the method with the networks of ``--model`` (trained once, on the full realistic development
  phantom), used as they are, under ``--settings``; ``--also NAME "SETTINGS"`` adds a column of ours under
  other settings (e.g. ``ours_normative "... method.normative=true"``), which can be added to a finished table.

The last row is the full realistic development phantom itself (DEV_DIR/model). So the table shows which
confounds make brightness fail and which make us fail. Every finished (phantom, method) is written at once
and skipped when the script is started again; phantoms and prepared folders are kept under
DEV_DIR/confounds/. Results: benchmarks/results/phantom_costs.json and a markdown table on stdout.

Usage: python benchmarks/bench_confounds.py DEV_DIR --model WORK [--settings "diffusion.samples=1 ..."]
       [--also NAME "SETTINGS" ...] [--seeds 0] [--confounds regional_cortex ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import earlier_result, provenance, write_result
from dev_signal import Variant, run_variant, summarise
from dev_workdirs import share

from pseudohealthy import workdir
from pseudohealthy.config import load_work_config, save_config
from pseudohealthy.data.prepare import prepare
from pseudohealthy.phantom.dataset import generate_dataset
from pseudohealthy.phantom.realism import CONFOUNDS, only

NO_LEARNING = "method.histogram_matching=none method.guidance=none method.normative=false"
REFERENCES = {"flair_zscore": f"method.detector=flair_zscore {NO_LEARNING}",
              "control_zscore": f"method.detector=control_zscore {NO_LEARNING}"}
LESION_MODEL = "fcd_range"  # on in every row: the lesions themselves, not a confound of healthy tissue
FULL = "all (the development phantom)"


def design(dev: Path) -> dict:
    """The development phantom's generator arguments, read from its truth.json."""
    truth = json.loads((dev / "bids_truth" / "truth.json").read_text())
    groups = {s["participant_id"]: s["group"] for s in truth["subjects"]}
    return {"seed": truth["seed"], "test_share": truth["test_share"], "subtle_test_share": truth["subtle_test_share"],
            "n_patients": sum(g == "fcd" for g in groups.values()), "n_controls": sum(g == "hc" for g in groups.values())}


def confound_work(dev: Path, confound: str) -> Path:
    """DEV_DIR/confounds/CONFOUND/model: the phantom with only ``confound`` on, prepared like DEV_DIR/model."""
    root = dev / "confounds" / confound
    bids, truth = root / "bids", root / "bids_truth"
    if not (truth / "truth.json").is_file():
        realism = only(() if confound == "none" else (confound,))
        generate_dataset(bids, jobs=2, truth_dir=truth, overwrite=True, realism=realism, **design(dev))
    work = root / "model"
    if not (work / "splits.tsv").is_file():
        prepare(bids, work, load_work_config(dev / "model"), jobs=2)
    if (work / "splits.tsv").read_text() != (dev / "model" / "splits.tsv").read_text():
        sys.exit(f"{work}: its split differs from {dev / 'model'}'s, so the networks could score subjects they "
                 "were trained on; move it away to prepare it again")
    return work


def with_networks(work: Path, model: Path) -> Path:
    """A folder beside ``work`` with its data and ``model``'s config and networks (same data settings)."""
    ours = work.parent / "model-ours"
    if not ours.exists():
        cfg = load_work_config(model)
        if cfg.data != load_work_config(work).data:
            sys.exit(f"{model}: prepared with other data settings than {work}; its networks cannot score it")
        share(work, ours, [])
        save_config(cfg, workdir.config_file(ours))
        (ours / "models").symlink_to((model / "models").resolve())
    return ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev_dir", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="work folder whose networks score every phantom")
    parser.add_argument("--settings", default="diffusion.samples=1 method.histogram_matching=central",
                        help="overrides of our method's config (default: one draw, the default matching)")
    parser.add_argument("--also", nargs=2, action="append", default=[], metavar=("NAME", "SETTINGS"),
                        help="another column of ours: its name and its overrides (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--confounds", nargs="+", default=["none", *(c for c in CONFOUNDS if c != LESION_MODEL)])
    args = parser.parse_args()
    also = dict(args.also)
    if set(also) & {*REFERENCES, "ours"}:
        sys.exit(f"--also names must differ from {', '.join([*REFERENCES, 'ours'])}")
    unknown = [c for c in args.confounds if c != "none" and c not in CONFOUNDS]
    if unknown:
        sys.exit(f"unknown confound(s) {', '.join(unknown)}; choose 'none' or from {', '.join(CONFOUNDS)}")
    result = earlier_result("phantom_costs") or {"provenance": provenance(), "model": str(args.model),
                                                 "settings": args.settings, "seeds": args.seeds, "rows": {}}
    made_with = (result.get("settings"), result.get("model"), result.get("seeds", [0]))
    if made_with != (args.settings, str(args.model), args.seeds):
        sys.exit("benchmarks/results/phantom_costs.json was made with another --model, --settings or --seeds; move "
                 "it away to start again")
    recorded = result.setdefault("also", {})
    if any(recorded.get(name, settings) != settings for name, settings in also.items()):
        sys.exit("benchmarks/results/phantom_costs.json has an --also column of that name with other settings")
    recorded.update(also)
    ours = {"ours": args.settings, **also}
    for confound in [*args.confounds, FULL]:
        row = result["rows"].setdefault(confound, {})
        if all(name in row for name in (*REFERENCES, *ours)):
            continue
        work = args.dev_dir / "model" if confound == FULL else confound_work(args.dev_dir, confound)
        for name, spec in [*REFERENCES.items(), *ours.items()]:
            if name in row:
                continue
            if name in ours:
                spec = f"{spec} work={with_networks(work, args.model)}"
            variant = Variant(f"{name} {spec}", work)
            runs = {s: run_variant(variant, s, work / "dev_signal" / "cache", print) for s in args.seeds}
            row[name] = summarise(runs)
            write_result("phantom_costs", result)
    print(table(result))


def table(result: dict) -> str:
    methods = (*REFERENCES, "ours", *result.get("also", {}))
    head = "| confound on | " + " | ".join(f"{m}: AUPRC / top-3 / CNR median / FP per control" for m in methods) + " |"
    lines = [head, "|" + "---|" * (len(methods) + 1)]
    for confound, row in result["rows"].items():
        cells = []
        for m in methods:
            s = row.get(m)
            cells.append("—" if s is None else f"{s['auprc'][0]:.3f} / {s['top3'][0]:.2f} / {s['cnr_median'][0]:.2f} / "
                                               f"{s['fp_per_control'][0]:.2f}")
        lines.append(f"| {confound} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
