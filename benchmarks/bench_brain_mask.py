"""Brain masks against the phantom's truth: the MNI152 template mask after the affine registration
(what ``data.brain_mask: template`` uses for non-skull-stripped input) against deepbet's learned mask
of the T1w, both on the native FLAIR grid, with the seconds deepbet takes per subject.

The truth is the MNI152 brain carried through each subject's known deformation and poses
(``phantom.subject.true_brain_mask``). Needs a prepared work folder of a phantom (for the template mask
and the registrations) and its truth folder.
Usage: python benchmarks/bench_brain_mask.py WORK_DIR TRUTH_DIR [--subjects 12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from common import provenance, write_result
from pseudohealthy.data.preprocess import NativeMapper, learned_brain_mask, load_meta, t1_mask_on_flair_grid
from pseudohealthy.metrics import dice
from pseudohealthy.phantom.readback import true_brain_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--subjects", type=int, default=12)
    args = parser.parse_args()
    truth = {s["participant_id"]: s for s in json.loads((args.truth / "truth.json").read_text())["subjects"]}
    prepared = sorted(p.parent.name for p in (args.work / "subjects").glob("*/meta.json"))[: args.subjects]
    learned_brain_mask(nib.load(load_meta(args.work / "subjects" / prepared[0])["inputs"]["t1w"]))  # warm-up
    rows = []
    for pid in prepared:
        out = args.work / "subjects" / pid
        meta = load_meta(out)
        flair, t1w = nib.load(meta["inputs"]["flair"]), nib.load(meta["inputs"]["t1w"])
        reference = true_brain_mask(truth[pid], args.truth, flair)
        template = np.asarray(NativeMapper(out)(np.asarray(nib.load(out / "brain.nii.gz").dataobj, np.float32)).dataobj) > 0.5
        start = time.perf_counter()
        mask = learned_brain_mask(t1w)
        seconds = time.perf_counter() - start
        learned = t1_mask_on_flair_grid(out, mask, flair)
        voxel_ml = abs(np.linalg.det(flair.affine[:3, :3])) / 1000
        row = {"participant_id": pid, "template_mask_source": meta["brain_mask"],
               "dice_template": round(dice(template, reference), 4), "dice_deepbet": round(dice(learned, reference), 4),
               "volume_true_ml": round(reference.sum() * voxel_ml, 1),
               "volume_template_ml": round(template.sum() * voxel_ml, 1),
               "volume_deepbet_ml": round(learned.sum() * voxel_ml, 1), "deepbet_seconds": round(seconds, 2)}
        rows.append(row)
        print(row, flush=True)
    summary = {k: {"mean": float(np.mean([r[k] for r in rows])), "min": float(np.min([r[k] for r in rows])),
                   "max": float(np.max([r[k] for r in rows]))}
               for k in ("dice_template", "dice_deepbet", "deepbet_seconds")}
    path = write_result("brain_mask", {"provenance": provenance(), "work": str(args.work), "subjects": rows,
                                       "summary": summary})
    print(json.dumps(summary, indent=1), path)


if __name__ == "__main__":
    main()
