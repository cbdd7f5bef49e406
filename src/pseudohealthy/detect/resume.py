"""What lets ``detect`` continue a stopped run: a fingerprint of the model, a marker per finished unit.

A unit's marker, OUT_DIR/sourcedata/work/<unit>/detect_done.json, is removed while its outputs are being
written and written last, holding the fingerprint (``run_key``) of the model that made them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pseudohealthy import workdir
from pseudohealthy.config import Config
from pseudohealthy.data.bids import unit_path
from pseudohealthy.io.atomic import write_json_atomic
from pseudohealthy.models.trained import model_dir, required_models

DONE_MARKER = "detect_done.json"


def run_key(work_dir: Path, cfg: Config) -> str:
    """Fingerprint of what determines a subject's outputs: config, calibration and the weights it uses."""
    digest = hashlib.sha256()
    for path in [workdir.config_file(work_dir), workdir.calibration_file(work_dir),
                 *[workdir.checkpoint_file(model_dir(work_dir, kind, cfg)) for kind in required_models(cfg)]]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def state_dir(out_dir: Path, participant_id: str) -> Path:
    """Where a unit's marker lives, and its preprocessing unless ``detect`` is given another work root."""
    return Path(out_dir) / "sourcedata" / "work" / participant_id


def existing_outputs(out_dir: Path, unit: str) -> list[Path]:
    """A unit's derivatives and report page already in OUT_DIR."""
    return sorted((Path(out_dir) / unit_path(unit)).glob("anat/*")) + [
        p for p in [Path(out_dir) / f"{unit}.html"] if p.exists()]


def output_state(out_dir: Path, participant_id: str, key: str) -> str:
    """'new' (no outputs), 'done' (finished by this same model), 'interrupted' (ours, unfinished) or 'foreign'."""
    if not existing_outputs(out_dir, participant_id):
        return "new"
    marker = state_dir(out_dir, participant_id) / DONE_MARKER
    if marker.is_file():
        return "done" if json.loads(marker.read_text()).get("run_key") == key else "foreign"
    # Derivatives of ours without the marker (written last): a run was stopped inside this subject.
    return "interrupted" if state_dir(out_dir, participant_id).is_dir() else "foreign"


def unmark_done(state: Path) -> None:
    """The unit's outputs are being rewritten: from here until ``mark_done`` it counts as interrupted."""
    (state / DONE_MARKER).unlink(missing_ok=True)


def mark_done(state: Path, key: str) -> None:
    """The last write of a unit: its derivatives are complete and were made by the model ``key`` names."""
    write_json_atomic(state / DONE_MARKER, {"run_key": key})
