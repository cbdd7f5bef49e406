"""``detect``: from a trained, calibrated model to every selected unit's derivatives and report.

Units are chosen (a BIDS dataset's subjects and sessions, or a plain T1w + FLAIR pair), those finished
with the same model are skipped (``detect.resume``), and the rest run one after another or in worker
processes; each unit is preprocessed, analysed (``detect.pipeline``), carried to its FLAIR's space and
written (``detect.derivatives``) with its report (``detect.report``); ``index.html`` lists all units.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import torch

from pseudohealthy.data.bids import SubjectInputs, SubjectSkipped, build_inventory
from pseudohealthy.data.preprocess import NativeMapper, is_done, load_meta, preprocess_subject
from pseudohealthy.detect.derivatives import classifier_summary, native_findings, write_derivatives, write_description
from pseudohealthy.detect.detector import Detector
from pseudohealthy.detect.pipeline import analyse
from pseudohealthy.detect.report import write_index, write_subject_report
from pseudohealthy.detect.resume import mark_done, output_state, state_dir, unmark_done
from pseudohealthy.errors import UserError


def detect_subject(inputs: SubjectInputs, out_dir: Path, detector: Detector, device: str = "cpu",
                   work_root: Path | None = None, figures: bool = True) -> dict:
    """Preprocess, synthesise, map back to native space, cluster, and write the subject's derivatives with
    the calibrated ``detector``.

    Preprocessing goes to ``work_root/<subject>`` (default OUT_DIR/sourcedata/work); the marker that says
    the subject is finished always lives in OUT_DIR/sourcedata/work/<subject>, written when the detector
    has a run fingerprint (a stored model's). ``figures=False`` writes the images and tables only, no PNGs
    or HTML report (the benchmark scores hundreds of runs).
    """
    cfg, calibration = detector.cfg, detector.calibration
    pid = inputs.unit  # sub-X, or sub-X_ses-Y: one session of a subject with sessions
    state = state_dir(out_dir, pid)
    state.mkdir(parents=True, exist_ok=True)
    scratch = Path(work_root) / pid if work_root else state
    if not is_done(scratch, cfg.data):
        preprocess_subject(inputs, cfg.data, scratch)
    maps = analyse(scratch, detector.models, cfg, device)
    meta = load_meta(scratch)
    flair_native = nib.load(inputs.flair)
    to_native = NativeMapper(scratch)
    found = native_findings(maps, scratch, meta, to_native, flair_native.affine, calibration, cfg)
    classifier = classifier_summary(maps)
    unmark_done(state)  # before the first write: a stop from here on leaves the unit 'interrupted'
    write_derivatives(out_dir, inputs, found, meta, calibration, cfg, classifier)
    if figures:
        write_subject_report(out_dir, inputs, found, flair_native, to_native.t1_on_flair_grid(scratch, inputs.t1w),
                             meta["brain_mask"], classifier, calibration["threshold"], detector.card, cfg)
    if detector.run_key:
        mark_done(state, detector.run_key)
    clusters, candidates = found.clusters, found.candidates
    top = (f"{clusters[0].hemisphere} {clusters[0].lobe}, {clusters[0].volume_mm3:.0f} mm³" if clusters else "none")
    return {"participant_id": pid, "n_clusters": len(clusters), "top": top, "classifier": classifier,
            "clusters": [c.row() for c in clusters], "candidates": [c.row() for c in candidates], "maps": maps,
            "lesion_mask": str(inputs.lesion_mask) if inputs.lesion_mask else None}


def _check_out_dir(source_dir: Path, out_dir: Path, what: str = "BIDS_DIR") -> None:
    """Outputs never go inside the input folder; OUT_DIR must be writable."""
    source, out = Path(source_dir).resolve(), Path(out_dir).resolve()
    if out == source or source in out.parents:
        raise UserError(f"OUT_DIR {out_dir} is inside {what} {source_dir}; choose a folder outside the input "
                        "data (e.g. BIDS_DIR/../derivatives/pseudohealthy)")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UserError(f"{out_dir}: not writable; choose a folder you can write to")


def detect(bids_dir: Path, out_dir: Path, work_dir: Path, participant_labels: Iterable[str] | None = None,
           overwrite: bool = False, device: str = "cpu", allow_2d_flair: bool = False,
           on_start: Callable[[int], None] | None = None,
           on_subject: Callable[[str, str | None], None] | None = None, samples: int | None = None,
           nprocs: int = 1, work_root: Path | None = None) -> list[dict]:
    """Detect lesions for every selected subject of ``bids_dir``; derivatives go to ``out_dir``.

    Re-running the same command continues an interrupted run: subjects finished with the same model
    are skipped, a subject stopped half-way is redone. Other existing outputs need ``overwrite``.
    """
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    _check_out_dir(bids_dir, out_dir)
    inventory = build_inventory(bids_dir, participant_labels, allow_2d_flair, require_labels=False)
    for pid, reason in inventory.skipped.items():
        if on_subject:
            on_subject(pid, reason)
    return _detect_all(inventory.subjects, out_dir, work_dir, bids_dir.resolve().as_uri(), overwrite, device,
                       on_start, on_subject, samples, nprocs, work_root)


def detect_pair(t1w: Path, flair: Path, out_dir: Path, work_dir: Path, participant_id: str = "sub-01",
                overwrite: bool = False, device: str = "cpu", samples: int | None = None,
                work_root: Path | None = None) -> dict:
    """Detect lesions on a plain T1w + FLAIR pair (any file names, no BIDS dataset); the outputs are
    the same BIDS-derivatives files as ``detect`` writes, named after ``participant_id``."""
    t1w, flair, out_dir = Path(t1w), Path(flair), Path(out_dir)
    for path, what in ((t1w, "T1w"), (flair, "FLAIR")):
        if not path.is_file():
            raise UserError(f"{path}: {what} file not found")
    if not re.fullmatch(r"sub-[A-Za-z0-9]+", participant_id):
        raise UserError(f"--subject {participant_id!r} is not a valid BIDS subject id (sub-<letters/digits>)")
    for path in (t1w, flair):
        _check_out_dir(path.parent, out_dir, "the input folder")
    inputs = SubjectInputs(participant_id, "unknown", t1w, flair, None, 0, None, None)
    results = _detect_all([inputs], out_dir, work_dir, flair.resolve().parent.as_uri(), overwrite, device,
                          samples=samples, work_root=work_root)
    if not results:
        raise UserError(f"{out_dir}: {participant_id} was already done with this model; pass --overwrite to redo it")
    return results[0]


def _detect_all(subjects: list[SubjectInputs], out_dir: Path, work_dir: Path, source_uri: str, overwrite: bool,
                device: str, on_start: Callable[[int], None] | None = None,
                on_subject: Callable[[str, str | None], None] | None = None,
                samples: int | None = None, nprocs: int = 1, work_root: Path | None = None) -> list[dict]:
    detector = Detector.load(work_dir, samples)
    states = {s.unit: output_state(out_dir, s.unit, detector.run_key) for s in subjects}
    if not overwrite:
        clash = [pid for pid, state in states.items() if state == "foreign"]
        if clash:
            raise UserError(f"{out_dir}: outputs for {', '.join(clash[:5])} already exist; pass --overwrite to "
                            "replace them or choose another OUT_DIR")
    write_description(out_dir, source_uri, detector.card)
    if on_start:
        on_start(len(subjects))
    todo = []
    for inputs in subjects:
        if states[inputs.unit] == "done" and not overwrite:
            if on_subject:
                on_subject(inputs.unit, "already done with this model (--overwrite redoes it)")
        else:
            todo.append(inputs)
    job = SubjectJob(out_dir, detector, device, work_root)
    results = []
    for pid, result, error in _run_subjects(job, todo, nprocs):
        if result is not None:
            results.append(result)
        if on_subject:
            on_subject(pid, error)
    write_index(out_dir, results)
    return results


@dataclass(frozen=True)
class SubjectJob:
    """What every subject of one ``detect`` run shares (picklable, for worker processes: the detector's
    networks are loaded again in each)."""

    out_dir: Path
    detector: Detector
    device: str
    work_root: Path | None

    def run(self, inputs: SubjectInputs) -> tuple[str, dict | None, str | None]:
        try:
            return inputs.unit, detect_subject(inputs, self.out_dir, self.detector, self.device, self.work_root), None
        except SubjectSkipped as exc:
            return inputs.unit, None, str(exc)


_worker: dict = {}


def _worker_start(job: SubjectJob, threads: int) -> None:
    torch.set_num_threads(threads)
    _worker.update(job=job)


def _worker_run(inputs: SubjectInputs) -> tuple[str, dict | None, str | None]:
    return _worker["job"].run(inputs)


def _run_subjects(job: SubjectJob, subjects: list[SubjectInputs],
                  nprocs: int) -> Iterator[tuple[str, dict | None, str | None]]:
    """(subject, result or None, skip reason or None) per subject, as each finishes. With ``nprocs`` > 1
    subjects run in that many worker processes (spawned; each loads the models once and uses its share
    of the CPU threads). Outputs are the same as serial: every subject's draws are seeded by its own id."""
    if nprocs <= 1 or len(subjects) <= 1:
        for inputs in subjects:
            yield job.run(inputs)
        return
    threads = max(1, torch.get_num_threads() // nprocs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(nprocs, len(subjects)), mp_context=context,
                             initializer=_worker_start, initargs=(job, threads)) as pool:
        for future in as_completed([pool.submit(_worker_run, inputs) for inputs in subjects]):
            yield future.result()
