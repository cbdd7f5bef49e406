"""Time of `pseudohealthy detect` for one subject at the 128 px (`medium`) preset, with peak memory.

Training the medium preset on 2 CPU cores takes hours, and the time of a detection does not depend
on the weights, so this builds a model folder with freshly initialised networks (step 0) and a
placeholder threshold, then runs the real `detect` command on one subject in a child process:
preprocessing, synthesis, mapping back to the FLAIR's space, clusters, derivatives and report.
The printed maps are meaningless; the seconds and the memory are what is measured.

Usage: python benchmarks/detect_128px.py BIDS_DIR PARTICIPANT [--preset medium]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import peak_rss_mb
from pseudohealthy.config import load_config, save_config
from pseudohealthy.io.atomic import write_json_atomic
from pseudohealthy.models.checkpoint import save_checkpoint
from pseudohealthy.models.networks import build_model
from pseudohealthy.models.trained import model_dir, network_signature


def untrained_model_dir(work: Path, preset: str) -> None:
    """WORK with the preset's config, step-0 checkpoints of the models it needs, and a threshold."""
    cfg = load_config(preset)
    save_config(cfg, work / "config.yaml")
    torch.manual_seed(cfg.seed)
    for kind in ("translator", "classifier"):
        net = build_model(kind, cfg)
        signature = network_signature(cfg, kind)  # what load_trained checks
        save_checkpoint(model_dir(work, kind, cfg) / "checkpoint.pt", kind=kind, preset=cfg.name,
                        network=signature["network"], signature=signature, step=0, model=net.state_dict(),
                        ema=net.state_dict(), optimizer={}, metrics={})
    write_json_atomic(work / "calibration.json", {"threshold": 1.0, "min_cluster_mm3": 50.0, "rank_by": "peak"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bids", type=Path)
    parser.add_argument("participant")
    parser.add_argument("--preset", default="medium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model"
        untrained_model_dir(work, args.preset)
        start = time.perf_counter()
        rss, seconds, rc = peak_rss_mb([sys.executable, "-m", "pseudohealthy", "detect", str(args.bids),
                                        f"{tmp}/out", "participant", "--model", str(work),
                                        "--participant-label", args.participant])
        if rc:
            sys.exit(f"detect failed with exit code {rc}")
        print(json.dumps({"preset": args.preset, "participant": args.participant, "seconds": round(seconds, 1),
                          "peak_rss_mb": round(rss), "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
