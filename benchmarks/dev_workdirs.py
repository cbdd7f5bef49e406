"""Work folders for development experiments that share one prepared dataset.

``share WORK NEW --set KEY=VALUE ...``: NEW links WORK's subjects, slices and splits and has its own config
(WORK's with the overrides) and its own models/, so networks trained with other settings live beside
WORK's without retraining anything else or preparing again. Data settings may not change this way.

``clip WORK NEW``: NEW holds WORK's subjects with FLAIR and T1 clipped at +1 and ``data.intensity_max`` 1,
exactly what ``prepare`` writes with the old range (clipping at 1 a volume clipped at a higher ceiling is
clipping the unclipped one at 1: the percentiles, the resampling and the line are the same), and its
own slices; the expensive registration and brain extraction are not run again.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy.config import load_work_config, save_config, with_overrides
from pseudohealthy.data.preprocess import load_meta
from pseudohealthy.data.slices import build_slice_cache
from pseudohealthy.data.splits import roles
from pseudohealthy.evaluation.run import parse_settings
from pseudohealthy.io.nifti import save_nifti
from pseudohealthy.workdir import META


def share(work: Path, new: Path, settings: list[str]) -> None:
    cfg = load_work_config(work)
    changed = with_overrides(cfg, parse_settings(settings))
    if changed.data != cfg.data:
        raise SystemExit("data settings change the prepared volumes: prepare (or `clip`) instead of sharing")
    new.mkdir(parents=True, exist_ok=False)
    for name in ("subjects", "slices", "splits.tsv", "inventory.tsv", "qc"):
        (new / name).symlink_to((work / name).resolve())
    save_config(changed, new / "config.yaml")


def clip(work: Path, new: Path) -> None:
    cfg = load_work_config(work)
    clipped = with_overrides(cfg, {"data": {"intensity_max": 1.0}})
    new.mkdir(parents=True, exist_ok=False)
    metas = []
    for subject in sorted((work / "subjects").iterdir()):
        meta = load_meta(subject)
        out = new / "subjects" / subject.name
        out.mkdir(parents=True)
        for path in subject.iterdir():
            if path.name == META:
                continue
            if path.name in ("flair.nii.gz", "t1.nii.gz"):
                img = nib.load(path)
                save_nifti(out / path.name, np.minimum(np.asarray(img.dataobj, np.float32), 1.0), img.affine)
            else:
                shutil.copy2(path, out / path.name)
        meta["data_config"] = clipped.data.model_dump(mode="json")
        for norm in meta["normalisation"].values():
            norm["top"] = 1.0
        (out / META).write_text(json.dumps(meta, indent=2))
        metas.append(meta)
    for name in ("splits.tsv", "inventory.tsv"):
        shutil.copy2(work / name, new / name)
    save_config(clipped, new / "config.yaml")
    build_slice_cache(new, metas, roles(new), clipped.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("share")
    p.add_argument("work", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--set", dest="settings", action="append", default=[])
    p = sub.add_parser("clip")
    p.add_argument("work", type=Path)
    p.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.command == "share":
        share(args.work, args.new, args.settings)
    else:
        clip(args.work, args.new)


if __name__ == "__main__":
    main()
