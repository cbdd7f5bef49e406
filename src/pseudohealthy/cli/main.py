"""The ``pseudohealthy`` command. Each command is a thin layer over a package function.

Errors in the user's input are printed as one line (no traceback) and exit with code 2;
``--debug`` shows the full traceback.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path

import typer

from pseudohealthy import __version__, workdir
from pseudohealthy.cli.steps import (
    console,
    print_figures,
    progress_bar,
    run_benchmark_command,
    run_calibrate,
    run_detect,
    run_phantom,
    run_prepare,
    run_prepare_dry,
    run_train,
    validate,
)
from pseudohealthy.devices import DEVICE_HELP, resolve_device
from pseudohealthy.errors import UserError
from pseudohealthy.evaluation.methods import METHODS

app = typer.Typer(
    name="pseudohealthy",
    help=(
        "Find focal cortical dysplasia (FCD type II) in T1w + FLAIR MRI by pseudo-healthy diffusion synthesis.\n\n"
        "Typical path: phantom (or your own BIDS dataset) -> prepare -> train (translator, classifier) -> calibrate "
        "-> detect. `pseudohealthy demo WORK_DIR` runs that path on a synthetic dataset."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


MODEL_HELP = "The WORK_DIR that `train` and `calibrate` used, or a MODEL.zip made by `export-model`."
SAMPLES_HELP = ("N pseudo-healthy draws per slice (diffusion.samples): the map is their mean, their spread the "
                "uncertainty, each cluster's confidence their agreement. Costs about N times the decoding.")


def _default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


# As a string, not the docstring: the help shows a docstring's line breaks, and the lines must stay short.
PHANTOM_HELP = (
    "Write a synthetic FCD type II BIDS dataset with the layout and quirks of OpenNeuro ds004199.\n\n"
    "Anatomy comes from the MNI152 template (varied per subject); lesions have the radiological features of "
    "FCD type II, from faint IIa to IIb with the transmantle sign. The realistic default adds what makes real "
    "FLAIR hard: normal FLAIR-bright anatomy and scanner artefacts (docs/phantom.md). Ground truth (lesion "
    "centroid, volume, contrast, transforms, every confound with its place and strength) is written outside "
    "the BIDS tree."
)


@app.command(help=PHANTOM_HELP)
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
    subtle_test_share: float = typer.Option(0.0, "--subtle-test-share", min=0.0, max=1.0,
                                            help="Give at least this share of the suggested test patients a small "
                                                 "(< 1 cm3), faint lesion (the benchmark uses 0.34)."),
    test_share: float = typer.Option(1 / 3, "--test-share", min=0.0, max=1.0,
                                     help="Share of the patients marked 'test' in participants.tsv (ds004199: "
                                          "about a third; the development set uses 0.5)."),
    realism: str = typer.Option("realistic", "--realism",
                                help="'realistic': normal FLAIR-bright variants, scanner artefacts, 1.5 and 3 T, "
                                     "faint FCD IIa (docs/phantom.md); 'legacy': the images of the generator "
                                     "before them, exactly."),
    without: list[str] = typer.Option([], "--without",
                                      help="Leave out this confound (repeatable): regional_cortex, "
                                           "corticospinal_tract, periventricular, punctate_wmh, "
                                           "cortical_partial_volume, csf_inflow, residual_nonuniformity, "
                                           "field_strength, motion_ringing, fcd_range."),
    always: list[str] = typer.Option([], "--always",
                                     help="Put this confound in every subject or scan (repeatable; for previews "
                                          "and tests): e.g. --always motion_ringing --always csf_inflow."),
) -> None:
    """Write a synthetic FCD type II BIDS dataset (the help text is PHANTOM_HELP)."""
    run_phantom(out_dir, patients, controls, seed, jobs, preview, truth_dir, overwrite, subtle_test_share, test_share,
                realism, tuple(without), tuple(always))


@app.command()
def prepare(
    bids_dir: Path = typer.Argument(..., help="BIDS dataset root (read only; nothing is written there)."),
    work_dir: Path = typer.Argument(..., help="Work folder for preprocessed data, splits and slices."),
    preset: str = typer.Option("quick", "--preset", help="Preset name (quick, paper) or a YAML config file."),
    participant_label: list[str] | None = typer.Option(None, "--participant-label",
                                                       help="Only these subjects, e.g. --participant-label "
                                                            "00001 00002 (with or without sub-)."),
    jobs: int = typer.Option(_default_jobs(), "--jobs", "-j", min=1, help="Subjects processed in parallel."),
    setting: list[str] | None = typer.Option(None, "--set", help="Override a preset setting, e.g. --set "
                                                                 "data.test_control_fraction=0.3; repeatable. The "
                                                                 "resolved config is saved in WORK_DIR/config.yaml."),
    allow_2d_flair: bool = typer.Option(False, "--allow-2d-flair",
                                        help="Use a thick-slice 2D FLAIR when a subject has no 3D FLAIR."),
    skip_validation: bool = typer.Option(False, "--skip-bids-validation",
                                         help="Do not run the BIDS validator on BIDS_DIR first."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the dataset's layout and participants.tsv and "
                                                          "print what would be used and skipped, and the split; "
                                                          "compute and write nothing."),
) -> None:
    """Preprocess a BIDS dataset into model-ready data: choose inputs, bias-correct, register to MNI152, normalise, slice.

    Per subject: N4; rigid T1w -> FLAIR; affine T1w -> MNI152; brain mask; resampling to the preset's template grid; intensities mapped to [-1, 1] inside the brain. Writes WORK_DIR/subjects/<sub>/ (volumes, transforms, meta.json), WORK_DIR/qc/*.png, inventory.tsv, splits.tsv, slices/ and config.yaml. Finished subjects are skipped when re-run.
    """
    validate(bids_dir, skip_validation)
    if dry_run:
        run_prepare_dry(bids_dir, preset, participant_label, allow_2d_flair, setting)
    else:
        run_prepare(bids_dir, work_dir, preset, participant_label, jobs, allow_2d_flair, setting)


@app.command()
def train(
    work_dir: Path = typer.Argument(..., help="Work folder made by `prepare`."),
    model: str = typer.Option(..., "--model", help="translator (the T1 -> FLAIR diffusion model), classifier "
                                                   "(the noise-aware lobe classifier) or autoencoder (the "
                                                   "DenoisingAE baseline)."),
    preset: str | None = typer.Option(None, "--preset", help="Preset or YAML file (default: WORK_DIR/config.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the model's checkpoint in WORK_DIR/models/ "
                                                         "if there is one (its folder: the model and its variant, "
                                                         "e.g. translator-t500)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Override the preset's iterations."),
    setting: list[str] | None = typer.Option(None, "--set", help="Train a variant, e.g. --set method.condition=none "
                                                                 "(the no-T1 ablation); repeatable."),
) -> None:
    """Train a model on the prepared slices (AdamW, EMA, checkpoints, exact resume).

    Writes WORK_DIR/models/<name>/checkpoint.pt (atomically, every checkpoint_every steps), metrics.csv (loss; validation loss, accuracy, lesion-vs-normal AUROC) and config.yaml. <name> is the model kind, plus what makes a variant (e.g. translator-none-t500 for --set method.condition=none under the quick preset), so baselines and ablations never overwrite the method's models.
    """
    run_train(work_dir, model, preset, resume, resolve_device(device), iterations, setting)


@app.command()
def calibrate(
    work_dir: Path = typer.Argument(..., help="Work folder with trained models."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    samples: int | None = typer.Option(None, "--samples", min=1, max=64,
                                       help=SAMPLES_HELP),
) -> None:
    """Choose the detection threshold on the validation subjects (never the test set) and store it.

    Runs the full detector on the validation patients and controls of WORK_DIR/splits.tsv, picks the anomaly threshold with the best mean Dice on the validation patients, and writes WORK_DIR/calibration.json.
    """
    run_calibrate(work_dir, resolve_device(device), samples)


@app.command()
def detect(
    bids_dir: Path = typer.Argument(..., help="BIDS dataset root (read only)."),
    out_dir: Path = typer.Argument(..., help="Output folder: a BIDS-derivatives dataset (outside BIDS_DIR)."),
    analysis_level: str = typer.Argument("participant", help="BIDS-App analysis level; only 'participant'."),
    model: Path = typer.Option(..., "--model", help=MODEL_HELP),
    participant_label: list[str] | None = typer.Option(None, "--participant-label",
                                                       help="Only these subjects, e.g. --participant-label "
                                                            "00001 00002 (with or without sub-); put it after "
                                                            "the positional arguments."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs of these subjects."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    allow_2d_flair: bool = typer.Option(False, "--allow-2d-flair", help="Use a 2D FLAIR when no 3D one exists."),
    skip_validation: bool = typer.Option(False, "--skip-bids-validation",
                                         help="Do not run the BIDS validator on BIDS_DIR first."),
    nprocs: int = typer.Option(1, "--nprocs", min=1, help="Subjects processed in parallel (worker processes that "
                                                          "share the CPU threads); same outputs as serial."),
    work: Path | None = typer.Option(None, "--work-dir", "-w", help="Where intermediate preprocessing goes "
                                                                      "(default OUT_DIR/sourcedata/work)."),
    samples: int | None = typer.Option(None, "--samples", min=1, max=64,
                                       help="N draws per slice; must be the N the model was calibrated for (the default)."),
) -> None:
    """Find FCD candidates per subject (a BIDS App): pseudo-healthy FLAIR, anomaly map, ranked clusters, report.

    Writes native-space NIfTI maps, a cluster table and an HTML report per subject, plus index.html, into OUT_DIR. Existing outputs are never replaced without --overwrite.
    """
    if analysis_level != "participant":
        raise UserError(f"analysis level '{analysis_level}' is not supported; use 'participant'")
    validate(bids_dir, skip_validation)
    run_detect(bids_dir, out_dir, model, participant_label, overwrite, resolve_device(device), allow_2d_flair, samples,
               nprocs, work)


@app.command("detect-pair")
def detect_pair(
    t1w: Path = typer.Argument(..., help="T1-weighted NIfTI (read only)."),
    flair: Path = typer.Argument(..., help="FLAIR NIfTI of the same session (read only)."),
    out_dir: Path = typer.Argument(..., help="Output folder (a BIDS-derivatives dataset), not the inputs' folder."),
    model: Path = typer.Option(..., "--model", help=MODEL_HELP),
    subject: str = typer.Option("sub-01", "--subject", help="Subject id used to name the outputs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs of this subject."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    work: Path | None = typer.Option(None, "--work-dir", "-w", help="Where intermediate preprocessing goes "
                                                                      "(default OUT_DIR/sourcedata/work)."),
    samples: int | None = typer.Option(None, "--samples", min=1, max=64,
                                       help="N draws per slice; must be the N the model was calibrated for (the default)."),
) -> None:
    """Find FCD candidates on a plain T1w + FLAIR pair, without a BIDS dataset.

    Same processing and outputs as `detect` (native-space maps, ranked clusters, HTML report), named after --subject.
    """
    from pseudohealthy.bundle.archive import opened_model
    from pseudohealthy.detect.run import detect_pair as detect_one

    with console.status("detect (preprocess, synthesise, cluster)"), opened_model(model) as work_dir:
        result = detect_one(t1w, flair, out_dir, work_dir, subject, overwrite, resolve_device(device), samples, work)
    console.print(f"[green]detected[/] {result['participant_id']}: {result['n_clusters']} cluster(s), top: "
                  f"{result['top']}; report: {Path(out_dir) / (result['participant_id'] + '.html')}")


@app.command("export-model")
def export_model(
    work_dir: Path = typer.Argument(..., help="Work folder with trained models and a calibration."),
    archive: Path = typer.Argument(..., help="The model archive to write (MODEL.zip)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace ARCHIVE if it exists."),
) -> None:
    """Write a trained model as one file to run elsewhere: `detect --model MODEL.zip`.

    The archive holds the resolved config, the calibration, the EMA weights of every network the method uses (plain tensors, loaded with weights_only), a model card (preset, training data, steps, validation figures, versions, date; JSON and Markdown) and SHA-256 checksums of every file. Damaged, altered or incompatible archives are refused when opened.
    """
    from pseudohealthy.bundle.archive import export_model as export
    from pseudohealthy.models.card import card_summary

    card = export(work_dir, archive, overwrite)
    size = archive.stat().st_size / 1e6
    console.print(f"[green]exported[/] {archive} ({size:.1f} MB): {card_summary(card)}", highlight=False)


@app.command()
def demo(
    work_dir: Path = typer.Argument(Path("demo-work"), help="Folder for everything the demo makes."),
    patients: int = typer.Option(8, "--patients", min=1, help="Synthetic patients."),
    controls: int = typer.Option(8, "--controls", min=1, help="Synthetic controls."),
    seed: int = typer.Option(0, "--seed"),
    jobs: int = typer.Option(_default_jobs(), "--jobs", "-j", min=1),
) -> None:
    """Run the main job end to end on a built-in synthetic dataset: phantom -> prepare -> train -> calibrate -> detect -> evaluate.

    Steps finished in an earlier run are reused, so an interrupted demo continues where it stopped. Ends by printing the report's path and the headline figures of the test subjects, read from the derivatives it wrote (native space) and on the template grid; they are kept in derivatives/demo_summary.json.
    """
    from pseudohealthy.cli.demo import run_demo

    run_demo(work_dir, patients, controls, seed, jobs)


@app.command()
def evaluate(
    work_dir: Path = typer.Argument(..., help="Work folder with trained models."),
    setting: list[str] | None = typer.Option(None, "--set", help="Override a setting for this evaluation, e.g. "
                                                                 "--set diffusion.guidance_scale=0; repeatable."),
    out: Path | None = typer.Option(None, "--out", help="Also write the figures to this JSON file."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    model: Path | None = typer.Option(None, "--model", help="A MODEL.zip (export-model) to evaluate on WORK_DIR's "
                                                            "prepared subjects instead of WORK_DIR's own models."),
    samples: int | None = typer.Option(None, "--samples", min=1, max=64,
                                       help=SAMPLES_HELP),
) -> None:
    """Measure the method on the test subjects of WORK_DIR, from the derivatives it writes (detection, clusters per control, Dice, pixel AUPRC; native FLAIR space) with template-grid AUPRC, R@5 and Dice beside them.

    With --set, inference settings change for this run only (models are not retrained); the threshold is re-chosen on the validation subjects with the same settings, never on the test set. The test subjects' derivatives go to WORK_DIR/evaluate/derivatives (no figures).
    """
    from pseudohealthy.bundle.archive import opened_model
    from pseudohealthy.evaluation.run import evaluate as evaluate_work, parse_settings
    from pseudohealthy.io.atomic import write_json_atomic

    overrides = parse_settings(setting or [])
    with progress_bar() as bar, opened_model(model) if model else nullcontext() as model_root:
        task = bar.add_task("evaluate (validation, then test subjects)", total=None)
        summary = evaluate_work(work_dir, overrides, resolve_device(device), on_subject=lambda pid: bar.advance(task),
                                model_root=model_root, samples=samples)
    print_figures(summary)
    if out:
        write_json_atomic(out, summary)
        console.print(f"figures in {out}")


@app.command()
def tune(
    work_dir: Path = typer.Argument(..., help="Work folder with trained models."),
    grid: list[str] = typer.Option(..., "--grid", help="Values to try for one setting, e.g. --grid "
                                                       "diffusion.noise_level=100,200,300; repeatable (the grid is "
                                                       "the product). Put the cheaper value first: it wins ties."),
    seeds: list[int] = typer.Option([0], "--seed", help="Noise seeds per point; repeatable (3 give a seed spread)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default WORK_DIR/tune)."),
    setting: list[str] | None = typer.Option(None, "--set", help="Fixed overrides under every point; repeatable."),
    samples: int | None = typer.Option(None, "--samples", min=1, max=64, help=SAMPLES_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Choose inference settings on the validation subjects only (never the test set).

    Runs every grid point for every seed on the validation patients and controls of WORK_DIR/splits.tsv with the trained models, chooses each point's threshold there, and scores it there (pooled pixel AUPRC, Dice). The chosen point has the best mean validation AUPRC; among points within one seed-SD of it, the first in grid order. Writes OUT/grid.tsv, grid.json and chosen.yaml (use it with --set or in a preset); finished points are reused when run again.
    """
    from pseudohealthy.evaluation.run import parse_settings
    from pseudohealthy.evaluation.tune import parse_grid, tune as tune_work

    points = parse_grid(grid)
    base = parse_settings(setting or [])

    def on_point(label, seed, row):
        bar.console.print(f"{label} seed {seed}: validation AUPRC {row['val_auprc']:.3f}, Dice {row['val_dice']:.3f}",
                          highlight=False)
        bar.advance(task)

    with progress_bar() as bar:
        task = bar.add_task("tune on validation subjects", total=len(points) * len(seeds))
        result = tune_work(work_dir, points, seeds, out, base, resolve_device(device), on_point, samples=samples)
    chosen = result["chosen"]
    console.print(f"[green]chosen[/]: {chosen['point']} (validation AUPRC {chosen['val_auprc_mean']:.3f} ± "
                  f"{chosen['val_auprc_sd']:.3f} over {len(chosen['seeds'])} seed(s)); "
                  f"{Path(out or workdir.tune_dir(work_dir)) / 'chosen.yaml'}", highlight=False)


@app.command()
def benchmark(
    work_dir: Path = typer.Argument(..., help="Work folder made by `prepare` (made here from --bids if missing)."),
    methods: str = typer.Option("all", "--methods", help="'all' or a comma-separated list of: "
                                                         f"{', '.join(METHODS)}."),
    bids: Path | None = typer.Option(None, "--bids", help="BIDS dataset to prepare WORK_DIR from when it has not "
                                                          "been prepared."),
    preset: str | None = typer.Option(None, "--preset", help="Preset for preparing from --bids (default quick); "
                                                             "with a prepared WORK_DIR it must be the one used."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default WORK_DIR/benchmark)."),
    setting: list[str] | None = typer.Option(None, "--set", help="Override a setting for every method, e.g. "
                                                                 "--set diffusion.steps=5; repeatable."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    jobs: int = typer.Option(_default_jobs(), "--jobs", "-j", min=1, help="Parallel subjects when preparing."),
    samples: int | None = typer.Option(None, "--samples", min=1, max=64,
                                       help=SAMPLES_HELP),
    seed: list[int] | None = typer.Option(None, "--seed", help="Noise seeds of the test runs (default 0 1 2); "
                                                              "repeatable."),
    tune_seed: list[int] | None = typer.Option(None, "--tune-seed", help="Seeds of each method's validation sweep "
                                                                        "(default 0); repeatable."),
    transfer_model: Path | None = typer.Option(None, "--transfer-model", help="A model trained on other subjects "
                                               "(MODEL.zip from export-model, or its work folder), also scored here "
                                               "without retraining as the row full_transfer (generalisation)."),
    report_only: bool = typer.Option(False, "--report-only", help="Run nothing: write the tables and figures again "
                                     "from the finished methods stored in OUT (after a report fix, or with a newer "
                                     "version of this package than the one that computed them)."),
) -> None:
    """Compare the method with its ablations and the paper's baselines on the same data: one table.

    For each method: trains the models of its grid that are missing (resuming unfinished ones); chooses its settings by a sweep of its own knobs on the validation subjects only (`tune`; grids and their sources in the table); then, for each seed, chooses the threshold on the validation subjects, runs `detect` on the test subjects and scores the native-space outputs it wrote (ranked-list and above-threshold detection, false-positive clusters per control, Dice, pixel AUPRC) with the template-grid AUPRC, R@5 and Dice (validation and oracle threshold) beside them, by lesion size and contrast too. Mean ± seed SD and 95 % CIs over subjects and seeds. Writes OUT/results.csv, results.json, results.md, figures/, configs/, tune/ and derivatives/ with each row's config, checkpoints, split, seeds and commit. Finished (method, seed) runs are reused when run again.
    """
    run_benchmark_command(work_dir, methods, bids, preset, out, setting or [], device, jobs,
                          samples, tuple(seed or (0, 1, 2)), tuple(tune_seed or (0,)), transfer_model,
                          report_only)


MULTI_VALUE_OPTIONS = ("--participant-label",)


def expand_multi_value_options(argv: list[str]) -> list[str]:
    """``--participant-label 01 02 03`` (fMRIPrep's form) -> one option per value, as click parses it.

    Values are the words after the option up to the next one starting with ``-``; as in fMRIPrep, give
    the positional arguments before the option.
    """
    out: list[str] = []
    option, values = None, 0

    def close() -> None:
        if option and not values:
            out.append(option)  # the option without a value: click reports it

    for word in argv:
        if word in MULTI_VALUE_OPTIONS:
            close()
            option, values = word, 0
        elif option and not word.startswith("-"):
            out += [option, word]
            values += 1
        else:
            close()
            option = None
            out.append(word)
    close()
    return out


def main() -> None:
    try:
        app(args=expand_multi_value_options(sys.argv[1:]), prog_name="pseudohealthy")
    except UserError as exc:
        if _state["debug"]:
            raise
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
