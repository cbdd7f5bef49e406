"""A trained model as one file: ``export-model`` writes it, ``--model MODEL.zip`` reads it.

The archive holds what detection needs and nothing else: the resolved config, the calibration,
each network the method uses (EMA weights only, as plain tensors), a model card, and a manifest with
the SHA-256 of every file. Opening an archive checks, in order: it is a zip; it has our manifest of a
format this package reads; every file's checksum matches; each checkpoint loads with
``torch.load(weights_only=True)`` (no pickled code) and holds only tensors and plain values. Then
it is unpacked into a temporary folder laid out like a work folder, so detection code needs no
second path.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import torch

from pseudohealthy import __version__, workdir
from pseudohealthy.config import load_work_config
from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_with_atomic
from pseudohealthy.models.card import model_card, model_card_markdown
from pseudohealthy.models.checkpoint import FORMAT as CHECKPOINT_FORMAT, load_checkpoint
from pseudohealthy.models.trained import load_calibration, model_dir, normative_key, required_models

MANIFEST = "pseudohealthy-model.json"
ARCHIVE_FORMAT = "pseudohealthy-model-1"
# Checkpoint entries an archive keeps: the EMA weights and what identifies them (no optimizer, no raw weights).
_KEPT = ("format", "kind", "preset", "network", "signature", "step", "ema", "metrics")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _slim_checkpoint(path: Path, kind: str) -> bytes:
    """The checkpoint at ``path`` with only the entries detection needs, serialised."""
    ckpt = load_checkpoint(path, expect_kind=kind)
    slim = {k: ckpt[k] for k in _KEPT if k in ckpt}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    return buffer.getvalue()


def export_model(work_dir: Path, archive: Path, overwrite: bool = False) -> dict:
    """Write ``archive`` (a .zip) from a trained, calibrated work folder; returns the model card."""
    work_dir, archive = Path(work_dir), Path(archive)
    if archive.suffix != ".zip":
        raise UserError(f"{archive}: the model archive's name must end in .zip")
    if archive.exists() and not overwrite:
        raise UserError(f"{archive} already exists; pass --overwrite to replace it or choose another name")
    cfg = load_work_config(work_dir)
    calibration = load_calibration(work_dir)
    files: dict[str, bytes] = {
        workdir.CONFIG: workdir.config_file(work_dir).read_bytes(),
        workdir.CALIBRATION: workdir.calibration_file(work_dir).read_bytes(),
    }
    for kind in required_models(cfg):
        path = workdir.checkpoint_file(model_dir(work_dir, kind, cfg))
        if not path.is_file():
            raise UserError(f"{path}: no trained {kind}; run `pseudohealthy train {work_dir} --model {kind}` first")
        files[path.relative_to(work_dir).as_posix()] = _slim_checkpoint(path, kind)  # the work folder's layout
    if cfg.method.normative:  # only the fit for the calibrated settings travels
        normative = workdir.normative_file(work_dir, normative_key(work_dir, cfg))
        if not normative.is_file():
            raise UserError(f"{work_dir}: no normative statistics for its settings ({normative} missing); run "
                            f"`pseudohealthy calibrate {work_dir}` first")
        files[normative.relative_to(work_dir).as_posix()] = normative.read_bytes()
    card = model_card(work_dir, cfg, calibration)
    files[workdir.MODEL_CARD] = (json.dumps(card, indent=2) + "\n").encode()
    files["MODEL_CARD.md"] = model_card_markdown(card).encode()
    manifest = {"format": ARCHIVE_FORMAT, "package_version": __version__, "torch_version": torch.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {name: _sha256(data) for name, data in sorted(files.items())}}

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
            for name, data in sorted(files.items()):
                zf.writestr(name, data)

    archive.parent.mkdir(parents=True, exist_ok=True)
    write_with_atomic(archive, write, suffix=".zip")
    return card


def _compatible(version: str) -> bool:
    """Archives from the same major.minor package version are read (0.x: minor releases may change it)."""
    ours, theirs = __version__.split(".")[:2], str(version).split(".")[:2]
    return ours == theirs


def _only_plain_values(value) -> bool:
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _only_plain_values(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_only_plain_values(v) for v in value)
    return False


def verify_archive(archive: Path) -> dict:
    """Check ``archive`` without unpacking it; its manifest, or a one-line ``UserError`` naming the fault."""
    archive = Path(archive)
    if not archive.is_file():
        raise UserError(f"{archive}: model archive not found")
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            if MANIFEST not in names:
                raise UserError(f"{archive}: not a pseudohealthy model archive (no {MANIFEST}); make one with "
                                "`pseudohealthy export-model WORK_DIR MODEL.zip`")
            manifest = json.loads(zf.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
                raise UserError(f"{archive}: archive format {manifest.get('format')!r} is not "
                                f"{ARCHIVE_FORMAT!r}; re-export it with this version of pseudohealthy")
            if not _compatible(manifest.get("package_version", "")):
                raise UserError(f"{archive}: made by pseudohealthy {manifest.get('package_version')}, which this "
                                f"version ({__version__}) cannot read; re-export it with pseudohealthy {__version__} "
                                "or install the version that made it")
            listed = manifest.get("files", {})
            extra = names - set(listed) - {MANIFEST}
            if extra:
                raise UserError(f"{archive}: holds files its manifest does not list ({', '.join(sorted(extra)[:3])}); "
                                "it was altered after export: re-export it")
            for name, digest in listed.items():
                if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                    raise UserError(f"{archive}: unsafe path {name!r} inside; refusing to open it")
                if name not in names:
                    raise UserError(f"{archive}: {name} is missing; the archive is incomplete: re-export it")
                if _sha256(zf.read(name)) != digest:
                    raise UserError(f"{archive}: checksum mismatch for {name}; the file is damaged or was "
                                    "altered: copy or re-export it again")
            for name in listed:
                if name.endswith(".pt"):
                    _check_checkpoint(archive, name, zf.read(name))
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive}: not a readable zip archive ({exc}); the file is damaged or incomplete: "
                        "copy or re-export it again") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{archive}: its manifest is not valid JSON; re-export it") from exc
    return manifest


def _check_checkpoint(archive: Path, name: str, data: bytes) -> None:
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled objects other than tensors and containers
        raise UserError(f"{archive}: {name} holds more than plain tensors ({exc.__class__.__name__}); "
                        "refusing to load it") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or not _only_plain_values(ckpt):
        raise UserError(f"{archive}: {name} is not a pseudohealthy checkpoint of plain tensors; refusing to load it")


@contextmanager
def opened_model(model: Path) -> Iterator[Path]:
    """A work-folder-like path for ``--model``: the folder itself, or a verified archive unpacked into a
    temporary folder that is removed afterwards."""
    model = Path(model)
    if not model.exists():
        raise UserError(f"--model {model}: not found; give the work folder that `train` and `calibrate` used, or a "
                        "MODEL.zip made by export-model")
    if model.is_dir():
        yield model
        return
    if model.suffix != ".zip":
        raise UserError(f"--model {model}: expected a work folder or a model archive (.zip) made by export-model")
    verify_archive(model)
    folder = Path(tempfile.mkdtemp(prefix="pseudohealthy-model-"))
    try:
        with zipfile.ZipFile(model) as zf:
            zf.extractall(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
