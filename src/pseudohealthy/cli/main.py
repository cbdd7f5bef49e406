"""The ``pseudohealthy`` command. Each command is a thin layer over a package function.

Errors in the user's input are printed as one line (no traceback) and exit with code 2;
``--debug`` shows the full traceback.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pseudohealthy import __version__
from pseudohealthy.errors import UserError

app = typer.Typer(
    name="pseudohealthy",
    help=(
        "Find focal cortical dysplasia (FCD type II) in T1w + FLAIR MRI by pseudo-healthy diffusion synthesis.\n\n"
        "Typical path: phantom (or your own BIDS dataset) -> prepare -> train -> calibrate -> detect -> benchmark. "
        "`pseudohealthy demo WORK_DIR` runs what exists of that path on a synthetic dataset."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"pseudohealthy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    _state["debug"] = debug


def _default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def run_phantom(out_dir: Path, patients: int, controls: int, seed: int, jobs: int, preview: bool,
                truth_dir: Path | None, overwrite: bool) -> dict:
    from pseudohealthy.phantom.dataset import check_output_dir, default_truth_dir, generate_dataset

    check_output_dir(out_dir, overwrite)
    start = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("phantom subjects", total=patients + controls)
        truth = generate_dataset(out_dir, patients, controls, seed, jobs=jobs, truth_dir=truth_dir,
                                 overwrite=overwrite, progress=lambda _pid: bar.advance(task))
    elapsed = time.perf_counter() - start
    truth_dir = Path(truth_dir) if truth_dir else default_truth_dir(out_dir)
    console.print(f"[green]wrote[/] {len(truth['subjects'])} subjects to {out_dir} in {elapsed:.0f} s "
                  f"({elapsed / len(truth['subjects']):.1f} s per subject, {jobs} job(s)); "
                  f"ground truth: {truth_dir / 'truth.json'}")
    if preview:
        from pseudohealthy.phantom.preview import dataset_previews

        pngs = dataset_previews(truth, truth_dir / "preview")
        console.print(f"[green]previews[/]: {len(pngs)} PNGs in {truth_dir / 'preview'}")
    return truth


@app.command()
def phantom(
    out_dir: Path = typer.Argument(..., help="Folder for the new BIDS dataset (must not exist, or be empty)."),
    patients: int = typer.Option(8, "--patients", min=0, help="Number of FCD patients (group 'fcd')."),
    controls: int = typer.Option(8, "--controls", min=0, help="Number of healthy controls (group 'hc')."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same dataset."),
    jobs: int = typer.Option(_default_jobs(), "--jobs", "-j", min=1, help="Subjects rendered in parallel."),
    preview: bool = typer.Option(False, "--preview", help="Also write a PNG per subject (T1w, FLAIR, lesion)."),
    truth_dir: Path | None = typer.Option(None, "--truth-dir",
                                          help="Where ground truth and previews go (default: OUT_DIR_truth, "
                                               "beside the dataset, outside the BIDS tree)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace OUT_DIR if it holds a dataset made by this generator."),
) -> None:
    """Write a synthetic FCD type II BIDS dataset with the layout and quirks of OpenNeuro ds004199.

    Anatomy comes from the MNI152 template (varied per subject); lesions have the radiological features of FCD type II. Ground truth (lesion centroid, volume, contrast, transforms) is written outside the BIDS tree.
    """
    run_phantom(out_dir, patients, controls, seed, jobs, preview, truth_dir, overwrite)


@app.command()
def demo(
    work_dir: Path = typer.Argument(Path("demo-work"), help="Folder for everything the demo makes."),
    patients: int = typer.Option(8, "--patients", min=1, help="Synthetic patients."),
    controls: int = typer.Option(8, "--controls", min=1, help="Synthetic controls."),
    seed: int = typer.Option(0, "--seed"),
    jobs: int = typer.Option(_default_jobs(), "--jobs", "-j", min=1),
) -> None:
    """Run the main job end to end on a built-in synthetic dataset.

    Steps finished in an earlier run are reused, so an interrupted demo continues where it stopped.
    """
    work_dir = Path(work_dir)
    bids = work_dir / "bids"
    truth_dir = work_dir / "bids_truth"
    if (truth_dir / "truth.json").is_file() and bids.is_dir():
        console.print(f"[cyan]phantom[/]: reusing {bids}")
    else:
        run_phantom(bids, patients, controls, seed, jobs, True, truth_dir, overwrite=True)
    console.print(f"[bold]demo finished[/]: dataset {bids}, previews {truth_dir / 'preview'}")


def main() -> None:
    try:
        app()
    except UserError as exc:
        if _state["debug"]:
            raise
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
