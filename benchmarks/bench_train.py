"""Training throughput, measured side by side in one run (issue: performance).

- our loop (per-step RNG, class labels, EMA, checkpoints) vs a plain fp32 loop over the same
  translator network and data: slices per second;
- our loop with bf16 autocast;
- peak resident memory of `pseudohealthy train` (quick preset) in a child process.

Usage: python benchmarks/bench_train.py WORK_DIR [--iterations 30]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import peak_rss_mb, provenance, write_result
from pseudohealthy.config import load_work_config, save_config
from pseudohealthy.data.slices import open_slice_cache
from pseudohealthy.diffusion.schedule import NoiseSchedule
from pseudohealthy.models.networks import build_translator, translator_input
from pseudohealthy.models.trained import model_dir
from pseudohealthy.training.trainer import train


def _scratch_work(work: Path, dest: Path, cfg) -> Path:
    dest.mkdir()
    shutil.copytree(work / "slices", dest / "slices")
    shutil.copy(work / "splits.tsv", dest / "splits.tsv")
    save_config(cfg, dest / "config.yaml")
    return dest


def ours(work: Path, cfg, iterations: int) -> float:
    """Slices per second of the training loop, from its own step clock (validation excluded)."""
    train(work, cfg, "translator", iterations=iterations)
    with open(model_dir(work, "translator", cfg) / "metrics.csv", newline="") as fh:
        seconds = float(list(csv.DictReader(fh))[-1]["seconds"])
    return iterations * cfg.train_translator.batch_size / seconds


def plain(work: Path, cfg, iterations: int) -> float:
    """A minimal fp32 loop over the same network and slices: no EMA, no checkpoints, global RNG."""
    cache = open_slice_cache(work)
    rows = cache.rows("train")
    labels = cache.labels
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    torch.manual_seed(cfg.seed)
    model = build_translator(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train_translator.lr)
    rng = np.random.default_rng(cfg.seed)
    batch = cfg.train_translator.batch_size
    start = time.perf_counter()
    for _ in range(iterations):
        pick = np.sort(rng.choice(rows, batch))
        flair = torch.from_numpy(np.asarray(cache.arrays["flair"][pick], np.float32)).unsqueeze(1)
        t1 = torch.from_numpy(np.asarray(cache.arrays["t1"][pick], np.float32)).unsqueeze(1)
        t = torch.randint(1, cfg.diffusion.timesteps + 1, (batch,))
        noise = torch.randn_like(flair)
        pred = model(translator_input(schedule.q_sample(flair, t, noise), t1, flair, cfg), t,
                     class_labels=torch.from_numpy(labels[pick]))
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return iterations * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="WORK_DIR made by `prepare` (e.g. demo-work/model)")
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    if not (args.work / "slices" / "index.tsv").is_file():
        sys.exit(f"{args.work}: no prepared slices; run `make demo` (or `pseudohealthy prepare`) first")
    cfg = load_work_config(args.work)
    cfg = cfg.model_copy(update={"train_translator": cfg.train_translator.model_copy(
        update={"checkpoint_every": 10**9})})
    bf16 = cfg.model_copy(update={"train_translator": cfg.train_translator.model_copy(update={"bf16": True})})
    result = provenance(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result["slices_per_second"] = {
            "plain_fp32_loop": round(plain(_scratch_work(args.work, tmp / "plain", cfg), cfg, args.iterations), 2),
            "ours_fp32": round(ours(_scratch_work(args.work, tmp / "ours", cfg), cfg, args.iterations), 2),
            "ours_bf16": round(ours(_scratch_work(args.work, tmp / "bf16", bf16), bf16, args.iterations), 2),
        }
        sps = result["slices_per_second"]
        result["ours_over_plain"] = round(sps["ours_fp32"] / sps["plain_fp32_loop"], 3)
        print("slices/s:", sps, "ours/plain:", result["ours_over_plain"])
        memory_work = _scratch_work(args.work, tmp / "memory", cfg)
        rss, seconds, rc = peak_rss_mb([sys.executable, "-m", "pseudohealthy", "train", str(memory_work),
                                        "--model", "translator", "--iterations", str(args.iterations)])
        result["train_cli"] = {"peak_rss_mb": round(rss), "seconds": round(seconds, 1), "exit_code": rc}
        print(f"train CLI ({args.iterations} iterations): peak RSS {rss:.0f} MB")
    print("results:", write_result("train", result))


if __name__ == "__main__":
    main()
