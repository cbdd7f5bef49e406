"""The steps of the path as the commands run them: a package function behind a progress bar, then its
result in one line. ``demo`` runs them one after another."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pseudohealthy import workdir
from pseudohealthy.devices import resolve_device
from pseudohealthy.errors import UserError

console = Console(stderr=True)


def progress_bar() -> Progress:
    """The progress bar every step shows (on stderr, with the console's messages)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def run_phantom(out_dir: Path, patients: int, controls: int, seed: int, jobs: int, preview: bool,
                truth_dir: Path | None, overwrite: bool, subtle_test_share: float = 0.0,
                test_share: float = 1 / 3, realism: str = "realistic", without: tuple[str, ...] = (),
                always: tuple[str, ...] = ()) -> dict:
    from pseudohealthy.phantom.dataset import check_output_dir, default_truth_dir, generate_dataset
    from pseudohealthy.phantom.realism import Realism

    setting = Realism(realism, tuple(without), tuple(always))
    check_output_dir(out_dir, overwrite)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("phantom subjects", total=patients + controls)
        truth = generate_dataset(out_dir, patients, controls, seed, jobs=jobs, truth_dir=truth_dir,
                                 overwrite=overwrite, progress=lambda _pid: bar.advance(task),
                                 subtle_test_share=subtle_test_share, test_share=test_share, realism=setting)
    elapsed = time.perf_counter() - start
    truth_dir = Path(truth_dir) if truth_dir else default_truth_dir(out_dir)
    console.print(f"[green]wrote[/] {len(truth['subjects'])} subjects to {out_dir} in {elapsed:.0f} s "
                  f"({elapsed / len(truth['subjects']):.1f} s per subject, {jobs} job(s)); "
                  f"ground truth: {truth_dir / 'truth.json'}")
    if preview:
        from pseudohealthy.phantom.preview import confound_previews, dataset_previews

        pngs = dataset_previews(truth, truth_dir / "preview") + confound_previews(truth, truth_dir / "preview")
        console.print(f"[green]previews[/]: {len(pngs)} PNGs in {truth_dir / 'preview'}")
    return truth


def validate(bids_dir: Path, skip: bool) -> None:
    """The BIDS validator on BIDS_DIR unless skipped (a missing folder is left to the reader's own message)."""
    from pseudohealthy.data.validation import validate_bids

    if skip or not Path(bids_dir).is_dir():
        return
    with console.status("BIDS validation"):
        warnings = validate_bids(bids_dir)
    console.print(f"[green]valid BIDS[/] ({warnings} warning(s); --skip-bids-validation skips this check)",
                  highlight=False)


def _inventory_table(inventory, title: str):
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("subject", "group", "T1w", "FLAIR", "lesion mask", "notes / reason"):
        table.add_column(col, overflow="fold")

    def short(path, pid):  # the entities that differ between files: acq label and suffix
        return path.name.removeprefix(pid + "_").removesuffix(".gz").removesuffix(".nii") if path else "-"

    for s in inventory.subjects:
        pid = s.unit
        table.add_row(pid, s.group, short(s.t1w, pid), short(s.flair, pid), short(s.lesion_mask, pid),
                      "; ".join(s.notes))
    for pid, reason in inventory.skipped.items():
        table.add_row(pid, "[red]skipped[/]", "", "", "", reason)
    return table


def _preset_with(preset: str, settings: list[str] | None):
    from pseudohealthy.config import load_config
    from pseudohealthy.evaluation.run import parse_settings

    return load_config(preset, overrides=parse_settings(settings or []))


def run_prepare_dry(bids_dir: Path, preset: str, labels: list[str] | None, allow_2d_flair: bool,
                    settings: list[str] | None = None) -> None:
    from collections import Counter

    from pseudohealthy.data.prepare import plan

    inventory, roles = plan(bids_dir, _preset_with(preset, settings), labels, allow_2d_flair)
    console.print(_inventory_table(inventory, f"dry run: inventory of {bids_dir}"))
    groups = {s.unit: s.group for s in inventory.subjects}
    counts = Counter(f"{roles[pid]} {'patients' if groups[pid] == 'fcd' else 'controls'}" for pid in roles)
    console.print(f"[green]would prepare[/] {len(inventory.subjects)} subject(s), skip {len(inventory.skipped)}; "
                  "split: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
                  + ". Nothing was computed or written.", highlight=False)


def run_prepare(bids_dir: Path, work_dir: Path, preset: str, labels: list[str] | None, jobs: int,
                allow_2d_flair: bool = False, settings: list[str] | None = None):
    from pseudohealthy.data.prepare import prepare as prepare_dataset

    cfg = _preset_with(preset, settings)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("prepare subjects", total=None)

        def on_inventory(inventory, n_todo):
            bar.console.print(_inventory_table(inventory, f"inventory of {bids_dir}"))
            bar.update(task, total=n_todo)

        def on_subject(pid, error):
            if error:
                bar.console.print(f"[yellow]skipped {pid}[/]: {error}", highlight=False)
            bar.advance(task)

        result = prepare_dataset(bids_dir, work_dir, cfg, labels, jobs, allow_2d_flair, on_inventory, on_subject)
    elapsed = time.perf_counter() - start
    n = len(result.processed)
    per = f" ({elapsed / n:.1f} s per subject with {jobs} job(s))" if n else ""
    console.print(f"[green]prepared[/] {n} subject(s) in {elapsed:.0f} s{per}, reused {len(result.reused)}, "
                  f"skipped {len(result.inventory.skipped)}; {len(result.slices.index)} slices; "
                  f"inventory: {workdir.inventory_file(work_dir)}; QC: {workdir.qc_dir(work_dir)}")
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}", highlight=False)
    return result


def run_train(work_dir: Path, model: str, preset: str | None, resume: bool, device: str,
              iterations: int | None = None, settings: list[str] | None = None) -> dict:
    from pseudohealthy.config import load_work_config, with_overrides
    from pseudohealthy.evaluation.run import parse_settings
    from pseudohealthy.training.trainer import train as train_model

    cfg = load_work_config(work_dir, preset)
    if settings:
        cfg = with_overrides(cfg, parse_settings(settings))
    quiet = int(os.environ.get("RANK", "0")) != 0  # under torchrun only rank 0 reports
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), console=console, disable=quiet) as bar:
        task = bar.add_task(f"train {model}", total=None, loss=float("nan"))

        def on_step(step, total, loss):
            bar.update(task, completed=step, total=total, loss=loss)

        metrics = train_model(work_dir, cfg, model, resume=resume, device=device, iterations=iterations,
                              on_step=on_step)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.startswith("val_"))
    if not quiet:
        console.print(f"[green]trained[/] {model}: step {metrics.get('step')}; {shown or 'no validation split'}")
    return metrics


def run_calibrate(work_dir: Path, device: str, samples: int | None = None) -> dict:
    from pseudohealthy.detect.calibration import calibrate as calibrate_model

    with progress_bar() as bar:
        task = bar.add_task("calibrate on validation subjects", total=None)
        result = calibrate_model(work_dir, device, on_subject=lambda pid: bar.advance(task), samples=samples)
    console.print(f"[green]calibrated[/]: threshold {result['threshold']:.4f} for {result['samples']} sample(s) "
                  f"on {len(result['chosen_on'])} "
                  f"validation subjects (Dice {result['val_dice']:.3f}, AUPRC {result['val_auprc']:.3f}); "
                  f"{workdir.calibration_file(work_dir)}")
    return result


def run_detect(bids_dir: Path, out_dir: Path, work_dir: Path, labels: list[str] | None, overwrite: bool,
               device: str = "cpu", allow_2d_flair: bool = False, samples: int | None = None, nprocs: int = 1,
               work_root: Path | None = None) -> list[dict]:
    from pseudohealthy.bundle.archive import opened_model
    from pseudohealthy.detect.run import detect as detect_subjects

    with progress_bar() as bar, opened_model(work_dir) as model:
        task = bar.add_task("detect", total=None)

        def on_subject(pid, error):
            if error:
                bar.console.print(f"[yellow]skipped {pid}[/]: {error}", highlight=False)
            bar.advance(task)

        results = detect_subjects(bids_dir, out_dir, model, labels, overwrite, device, allow_2d_flair,
                                  on_start=lambda n: bar.update(task, total=n), on_subject=on_subject,
                                  samples=samples, nprocs=nprocs, work_root=work_root)
    console.print(f"[green]detected[/] {len(results)} subject(s); report: {Path(out_dir) / 'index.html'}")
    return results


def print_figures(summary: dict) -> None:
    """Detection as a user finds it in the derivatives (native FLAIR space, ``evaluation.native_scores``), then
    the template-grid figures of the same maps."""
    outputs, template = summary["outputs"], summary["template_grid"]
    where = f" in {summary['derivatives']}" if "derivatives" in summary else ""
    console.print(f"from the derivatives{where} (native FLAIR space, {outputs['patients']} test patient(s), "
                  f"{outputs['controls']} test control(s)):", highlight=False)
    console.print(f"  lesion hit by a cluster above the threshold {outputs['detected']:.2f} (top-1 {outputs['top1']:.2f}, "
                  f"top-3 {outputs['top3']:.2f}); strongest region (cluster or candidate) on the lesion "
                  f"{outputs['ranked_top1']:.2f}; any listed region {outputs['ranked_any']:.2f}; clusters per "
                  f"control {outputs['fp_clusters_per_control']:.1f}; Dice {outputs['dice']:.3f}; native pixel "
                  f"AUPRC {outputs['native_auprc']:.3f}", highlight=False)
    console.print(f"on the template grid, same maps: pixel AUPRC {template['auprc']:.3f}, R@5 {template['r@5']:.3f}, "
                  f"Dice at the validation threshold {template['dice_val']:.3f} (oracle {template['dice_oracle']:.3f})",
                  highlight=False)


def run_benchmark_command(work_dir: Path, methods: str, bids: Path | None, preset: str | None, out: Path | None,
                          settings: list[str], device: str, jobs: int, samples: int | None, seeds: tuple[int, ...],
                          tune_seeds: tuple[int, ...], transfer_model: Path | None, report_only: bool) -> None:
    """``benchmark``: prepare WORK_DIR from --bids if needed, run every method behind one progress bar on
    ``device`` ('auto', 'cpu', 'cuda', ...) (or only write the report again), then one line per method."""
    from pseudohealthy.config import load_work_config
    from pseudohealthy.evaluation.benchmark import run_benchmark, stored_results
    from pseudohealthy.evaluation.methods import select_methods
    from pseudohealthy.evaluation.report import write_report
    from pseudohealthy.evaluation.run import parse_settings

    specs = select_methods(methods)
    out = out or workdir.benchmark_dir(work_dir)
    if report_only:
        if not workdir.config_file(work_dir).is_file():
            raise UserError(f"{work_dir}: not a prepared work folder; --report-only needs the folder the benchmark ran on")
        results = stored_results(out, specs)
        write_report(results, out, work_dir)
        console.print(f"{len(results)} methods ({', '.join(r['name'] for r in results)}); table: {out / 'results.md'}; "
                      f"figures: {out / 'figures'}", highlight=False)
        return
    overrides = parse_settings(settings)
    if not workdir.config_file(work_dir).is_file():
        if bids is None:
            raise UserError(f"{work_dir}: not prepared; pass --bids BIDS_DIR to prepare it, or run "
                            f"`pseudohealthy prepare BIDS_DIR {work_dir}` first")
        run_prepare(bids, work_dir, preset or "quick", None, jobs)
    elif preset and load_work_config(work_dir).name != preset:
        raise UserError(f"{work_dir} was prepared with preset '{load_work_config(work_dir).name}', not '{preset}'; "
                        "use another WORK_DIR for another preset")
    device = resolve_device(device)  # after --report-only, which runs no network
    with progress_bar() as bar:
        task = bar.add_task("benchmark", total=None)

        def on_event(event: str, detail: str) -> None:
            if event == "train":
                bar.reset(task, description=f"train {detail}", total=None)
            elif event == "tune":
                bar.reset(task, description=f"{detail}: sweep on validation subjects", total=None)
            elif event == "point":
                bar.console.print(f"  validation point {detail}", highlight=False)
            elif event == "method":
                bar.reset(task, description=f"{detail}: validation, then test subjects", total=None)
            elif event == "subject":
                bar.advance(task)
            elif event in ("trained", "done"):
                bar.console.print(f"[green]{event}[/] {detail}")

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total)

        results = run_benchmark(work_dir, specs, out, overrides, device, on_event, on_step, seeds=seeds,
                                tune_seeds=tune_seeds, transfer=transfer_model, samples=samples)
    for r in results:
        m = r["metrics"]
        console.print(f"  {r['name']:16s} native AUPRC {m['native_auprc']['mean']:.3f} ± {m['native_auprc']['sd']:.3f}"
                      f"  top-1 (ranked) {m['ranked_top1']['mean']:.2f}  detected {m['detected']['mean']:.2f}  "
                      f"FP/control {m['fp_clusters_per_control']['mean']:.1f}  "
                      f"template AUPRC {m['template_auprc']['mean']:.3f}  chosen: {r['grid']['chosen'] or 'preset'}",
                      highlight=False)
    console.print(f"table: {out / 'results.md'}; figures: {out / 'figures'}")
