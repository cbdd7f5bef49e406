"""``prepare``: BIDS dataset -> preprocessed subjects, splits and the slice cache in a work folder.

Resumable: a subject with a finished ``meta.json`` made with the same data settings is skipped.
Never writes into the BIDS folder.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from pseudohealthy import workdir
from pseudohealthy.config import Config, load_config, save_config, with_overrides
from pseudohealthy.data.bids import Inventory, SubjectInputs, SubjectSkipped, build_inventory
from pseudohealthy.data.preprocess import is_done, load_meta, preprocess_subject
from pseudohealthy.data.qc import registration_qc
from pseudohealthy.data.slices import SliceCache, build_slice_cache
from pseudohealthy.data.splits import assign_roles, training_controls
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_text_atomic


@dataclass
class PrepareResult:
    inventory: Inventory
    processed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    slices: SliceCache | None = None
    notes: list[str] = field(default_factory=list)  # settings prepare changed in the saved config, and why


def check_work_dir(bids_dir: Path, work_dir: Path, cfg: Config) -> None:
    bids, work = Path(bids_dir).resolve(), Path(work_dir).resolve()
    if work.exists() and not work.is_dir():
        raise UserError(f"WORK_DIR {work_dir} is a file; give a folder (it is created if missing)")
    if work == bids or bids in work.parents:
        raise UserError(f"WORK_DIR {work_dir} is inside BIDS_DIR {bids_dir}; choose a folder outside the dataset "
                        "(the input dataset is never written to)")
    saved = workdir.config_file(work)
    if saved.is_file():
        previous = load_config(saved)
        if previous.data != cfg.data:
            raise UserError(f"{work_dir} was prepared with other data settings (preset '{previous.name}'); "
                            f"use a new WORK_DIR or the same preset")
    if work.exists() and not os.access(work, os.W_OK):
        raise UserError(f"{work_dir}: not writable; choose a folder you can write to")


def _run_one(args: tuple[SubjectInputs, Config, str]) -> tuple[str, str | None]:
    """Preprocess one unit (subject or session, in a worker); returns (unit, reason it was skipped or None)."""
    inputs, cfg, work_dir = args
    out = workdir.subject_dir(work_dir, inputs.unit)
    try:
        preprocess_subject(inputs, cfg.data, out)
        registration_qc(out, workdir.registration_qc_file(work_dir, inputs.unit),
                        f"{inputs.unit} ({inputs.group})")
        return inputs.unit, None
    except SubjectSkipped as exc:
        return inputs.unit, str(exc)


def plan(bids_dir: Path, cfg: Config, participant_labels: Iterable[str] | None = None,
         allow_2d_flair: bool = False) -> tuple[Inventory, dict[str, str]]:
    """What ``prepare`` would use, computing and writing nothing (``prepare --dry-run``): the files
    chosen per subject, the subjects skipped with their reasons, and the role each usable subject
    would get (assuming every one of them preprocesses without error)."""
    inventory = build_inventory(bids_dir, participant_labels, allow_2d_flair)
    roles = assign_roles([{"participant_id": s.unit, "subject": s.participant_id, "group": s.group, "split": s.split}
                          for s in inventory.subjects], cfg.data, cfg.seed)
    return inventory, roles


def prepare(bids_dir: Path, work_dir: Path, cfg: Config, participant_labels: Iterable[str] | None = None,
            jobs: int = 1, allow_2d_flair: bool = False,
            on_inventory: Callable[[Inventory, int], None] | None = None,
            on_subject: Callable[[str, str | None], None] | None = None) -> PrepareResult:
    """Preprocess every usable subject, then write splits and the slice cache.

    ``on_inventory(inventory, n_to_process)`` is called once the inputs are chosen;
    ``on_subject(pid, error)`` after each subject (for progress display).
    """
    work_dir = Path(work_dir)
    check_work_dir(bids_dir, work_dir, cfg)
    inventory = build_inventory(bids_dir, participant_labels, allow_2d_flair)
    work_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, workdir.config_file(work_dir))
    result = PrepareResult(inventory)
    todo = []
    for inputs in inventory.subjects:
        out = workdir.subject_dir(work_dir, inputs.unit)
        if is_done(out, cfg.data):
            result.reused.append(inputs.unit)
        else:
            todo.append(inputs)
    if on_inventory:
        on_inventory(inventory, len(todo))
    work = [(inputs, cfg, str(work_dir)) for inputs in todo]
    if jobs > 1 and len(work) > 1:
        # Spawned, not forked: a worker may run deepbet (torch), and a fork of a process whose torch thread
        # pool has already run can deadlock in the child.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, w) for w in work]
            outcomes = (f.result() for f in as_completed(futures))
            _collect(outcomes, result, on_subject)
    else:
        _collect((_run_one(w) for w in work), result, on_subject)

    inventory.skipped.update(result.failed)
    usable = result.processed + result.reused
    inventory.subjects = [s for s in inventory.subjects if s.unit in usable]
    write_text_atomic(workdir.inventory_file(work_dir), inventory.to_tsv())
    if not usable:
        pid, reason = next(iter(inventory.skipped.items()), ("", "no subjects selected"))
        raise UserError(f"no usable subject in {bids_dir}: {pid}: {reason} "
                        f"(all reasons: {workdir.inventory_file(work_dir)})")
    metas = [load_meta(workdir.subject_dir(work_dir, pid)) for pid in sorted(usable)]
    result.roles = assign_roles(metas, cfg.data, cfg.seed)
    write_text_atomic(workdir.splits_file(work_dir), "participant_id\tgroup\trole\n" + "".join(
        f"{m['participant_id']}\t{m['group']}\t{result.roles[m['participant_id']]}\n" for m in metas))
    result.slices = build_slice_cache(work_dir, metas, result.roles, cfg.data)
    n_controls = len(training_controls(work_dir))
    if cfg.method.normative and n_controls < 2:
        save_config(with_overrides(cfg, {"method": {"normative": False}}, "prepare"), workdir.config_file(work_dir))
        result.notes.append(f"method.normative is off in {workdir.config_file(work_dir)}: the normative residual is "
                            f"fitted on at least 2 training controls and this dataset has {n_controls}")
    return result


def _collect(outcomes, result: PrepareResult, on_subject) -> None:
    for pid, error in outcomes:
        if error is None:
            result.processed.append(pid)
        else:
            result.failed[pid] = error
        if on_subject:
            on_subject(pid, error)

