"""Why the networks do what they do, on the development set (docs/experiments.md).

``eps WORK [WORK ...]``: the translator's ε-MSE on validation slices at the noise levels detection uses
(fixed noise), per work folder: does training where inference works pay?

``classifier WORK [WORK ...]``: the classifier's lesion-vs-normal AUROC (1 − p(y = 0)) at those levels, on
the validation slices and on the development slices (the work folder's ``test`` role), and the translator's
label effect ‖ε(y = lobe) − ε(y = 0)‖ / ‖ε(y = 0)‖ on lesion slices: is the label conditioning inert?

``guidance WORK --variant ... --against ...``: how far guidance moves lesion pixels and healthy pixels,
from the same cached draws ``dev_signal.py`` made (same seeds and noise, so the difference is guidance's).
Results: benchmarks/results/dev_<NAME>_diag_<command>.json (``--name``, e.g. ``real`` for the realistic set, so
runs on different development sets do not overwrite each other) and a table on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import provenance, write_result
from dev_signal import Variant, draws
from sklearn.metrics import roc_auc_score

from pseudohealthy.config import load_work_config
from pseudohealthy.data.slices import open_slice_cache
from pseudohealthy.data.splits import roles
from pseudohealthy.detect.pipeline import SubjectVolumes, load_models
from pseudohealthy.diffusion.schedule import NoiseSchedule
from pseudohealthy.models.networks import translator_input
from pseudohealthy.models.trained import draw_key, load_trained

LEVELS = (10, 30, 100, 200, 300, 500)


def _slices(work: Path, role: str, only_lesion: bool = False, limit: int = 512):
    cache = open_slice_cache(work)
    rows = cache.rows(role)
    if only_lesion:
        rows = rows[cache.labels[rows] > 0]
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(0).choice(rows, limit, replace=False))
    flair = torch.from_numpy(np.asarray(cache.arrays["flair"][rows], np.float32)).unsqueeze(1)
    t1 = torch.from_numpy(np.asarray(cache.arrays["t1"][rows], np.float32)).unsqueeze(1)
    return flair, t1, torch.from_numpy(cache.labels[rows])


@torch.no_grad()
def eps_mse(work: Path) -> dict:
    cfg = load_work_config(work)
    net = load_trained(work, cfg, "translator")
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    flair, t1, _ = _slices(work, "val")
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(flair.shape, generator=gen)
    out = {}
    for level in LEVELS:
        t = torch.full((len(flair),), level, dtype=torch.long)
        errors = []
        for i in range(0, len(flair), 64):
            x_t = schedule.q_sample(flair[i:i + 64], t[i:i + 64], noise[i:i + 64])
            pred = net(translator_input(x_t, t1[i:i + 64], flair[i:i + 64], cfg), t[i:i + 64],
                       class_labels=torch.zeros(len(x_t), dtype=torch.long))
            errors.append(((pred - noise[i:i + 64]) ** 2).mean(dim=(1, 2, 3)))
        out[str(level)] = float(torch.cat(errors).mean())
    return out


@torch.no_grad()
def classifier(work: Path) -> dict:
    cfg = load_work_config(work)
    clf = load_trained(work, cfg, "classifier")
    net = load_trained(work, cfg, "translator")
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    out: dict = {}
    for role in ("val", "test"):
        flair, _, labels = _slices(work, role, limit=2048)
        noise = torch.randn(flair.shape, generator=torch.Generator().manual_seed(1))
        for level in LEVELS:
            t = torch.full((len(flair),), level, dtype=torch.long)
            probs = torch.cat([torch.softmax(clf(schedule.q_sample(flair[i:i + 128], t[i:i + 128], noise[i:i + 128]),
                                                 t[i:i + 128]), 1) for i in range(0, len(flair), 128)])
            y = (labels > 0).numpy()
            out[f"auroc_{role}_{level}"] = float(roc_auc_score(y, 1 - probs[:, 0].numpy())) if 0 < y.sum() < len(y) \
                else float("nan")
        out[f"lesion_slices_{role}"] = int((labels > 0).sum())
    flair, t1, labels = _slices(work, "test", only_lesion=True)
    noise = torch.randn(flair.shape, generator=torch.Generator().manual_seed(2))
    for level in (30, 100, 300):
        t = torch.full((len(flair),), level, dtype=torch.long)
        x_t = schedule.q_sample(flair, t, noise)
        inputs = translator_input(x_t, t1, flair, cfg)
        e_label = net(inputs, t, class_labels=labels)
        e_zero = net(inputs, t, class_labels=torch.zeros_like(labels))
        ratio = (e_label - e_zero).flatten(1).norm(dim=1) / e_zero.flatten(1).norm(dim=1)
        out[f"label_effect_{level}"] = [float(ratio.median()), float(ratio.max())]
    return out


def guidance(work: Path, specs: list[str], against: str, seeds: list[int]) -> dict:
    """Mean |guided − unguided| over lesion voxels and over healthy brain voxels of the development
    patients (template grid, the draws' mean), per variant."""
    cache = work / "dev_signal" / "cache"
    reference = Variant(against, work)
    out = {}
    for spec in specs:
        variant = Variant(spec, work)
        moved_lesion, moved_healthy = [], []
        for seed in seeds:
            cfg_v, cfg_r = variant.config(seed), reference.config(seed)
            models_v, models_r = load_models(variant.work, cfg_v), load_models(reference.work, cfg_r)
            cache_v, cache_r = cache / draw_key(variant.work, cfg_v)[:16], cache / draw_key(reference.work, cfg_r)[:16]
            for unit in sorted(u for u, r in roles(work).items() if r == "test"):
                volumes = SubjectVolumes.load(work / "subjects" / unit)
                if not volumes.lesion.any():
                    continue
                a = draws(cfg_v, models_v, volumes, cache_v)[0]
                b = draws(cfg_r, models_r, volumes, cache_r)[0]
                moved = np.abs(a.samples.mean(0) - b.samples.mean(0))
                moved_lesion.append(float(moved[volumes.lesion & volumes.brain].mean()))
                moved_healthy.append(float(moved[volumes.brain & ~volumes.lesion].mean()))
        out[variant.name] = {"lesion": float(np.mean(moved_lesion)), "healthy": float(np.mean(moved_healthy)),
                             "ratio": float(np.mean(moved_lesion) / max(np.mean(moved_healthy), 1e-9))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["eps", "classifier", "guidance"])
    parser.add_argument("work", type=Path, nargs="+")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--against")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--name", required=True, help="the development set's name: results go to "
                        "benchmarks/results/dev_NAME_diag_COMMAND.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.command == "guidance":
        result = guidance(args.work[0], args.variant, args.against, args.seeds)
    else:
        fn = eps_mse if args.command == "eps" else classifier
        result = {str(w): fn(w) for w in args.work}
    write_result(f"dev_{args.name}_diag_{args.command}", {"provenance": provenance(), "result": result})
    for key, value in result.items():
        print(key, value)


if __name__ == "__main__":
    main()
