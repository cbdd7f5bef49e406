"""Read a BIDS dataset in the layout of ds004199 and choose each subject's inputs.

A subject with session folders (``sub-X/ses-Y/anat``) gives one unit of work per session, named
``sub-X_ses-Y`` (work folders, reports) and keeping its ``ses-`` entity in the derivatives; all of a
subject's sessions share its role in the splits.

Quirks handled (shared/docs/DATASET.md): participants.tsv with a UTF-8 BOM, CRLF rows and ``n/a``;
several T1w / FLAIR acq labels (chosen by preference, the choice is reported); thick-slice 2D
FLAIRs (used only when nothing else exists and ``allow_2d_flair`` is set); lesion masks found by
pattern, whatever their acq label, and checked to lie on the chosen FLAIR's grid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudohealthy.data.labels import UnknownLobeError, lobe_class
from pseudohealthy.errors import UserError
from pseudohealthy.io.nifti import InputError, load_volume, same_grid, voxel_sizes

T1_PREFERENCE = ["iso08", "sag111", "sag111VNS"]
FLAIR_3D_PREFERENCE = ["T2sel", "tse3dvfl", "32ch10"]
FLAIR_2D_LABELS = {"cor3mmOPT", "cor4mm", "corAcpc4mm", "corhipp4mm", "tra4mm", "traAcpc4mm", "traacpcVNS"}
THICK_SLICE_MM = 2.5  # a FLAIR with a voxel side above this is treated as 2D thick-slice
GROUPS = {"fcd": "patient", "hc": "control"}
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")


class SubjectSkipped(Exception):
    """A subject that cannot be used; the message says why and names the file."""


@dataclass(frozen=True)
class Participant:
    participant_id: str
    group: str  # "fcd" | "hc"
    lobe: str | None
    hemisphere: str | None
    split: str | None
    row: dict[str, str]


@dataclass(frozen=True)
class SubjectInputs:
    """The files chosen for one usable subject and its labels."""

    participant_id: str
    group: str
    t1w: Path
    flair: Path
    lesion_mask: Path | None
    label: int  # 0 for controls, lobe class 1–8 for patients
    hemisphere: str | None
    split: str | None
    notes: tuple[str, ...] = ()
    brain_mask: Path | None = None  # a user-provided brain mask on the FLAIR grid
    session: str | None = None  # "ses-Y" when the subject's data lie in session folders

    @property
    def unit(self) -> str:
        """The unit of work: ``sub-X``, or ``sub-X_ses-Y`` for one session of a subject with sessions."""
        return unit_name(self.participant_id, self.session)


@dataclass
class Inventory:
    subjects: list[SubjectInputs] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # participant_id -> reason

    def to_tsv(self) -> str:
        lines = ["participant_id\tstatus\tgroup\tlabel\tt1w\tflair\tlesion_mask\tnotes"]
        for s in self.subjects:
            lines.append("\t".join([s.unit, "ok", s.group, str(s.label), s.t1w.name, s.flair.name,
                                    s.lesion_mask.name if s.lesion_mask else "n/a", "; ".join(s.notes) or "n/a"]))
        for pid, reason in self.skipped.items():
            lines.append("\t".join([pid, "skipped", "n/a", "n/a", "n/a", "n/a", "n/a", reason]))
        return "\n".join(lines) + "\n"


def _na(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value in {"", "n/a", "N/A", "NA", "nan"} else value


def read_participants(bids_dir: Path, require_group: bool = True) -> dict[str, Participant]:
    """Parse participants.tsv (BOM, CRLF and ``n/a`` tolerated).

    Without ``require_group`` (detection: labels are not needed) a missing file or ``group`` column is
    tolerated and the subjects are the ``sub-*`` folders.
    """
    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        if not require_group:
            return {p.name: Participant(p.name, "", None, None, None, {})
                    for p in sorted(Path(bids_dir).glob("sub-*")) if p.is_dir() and _LABEL_RE.match(p.name[4:])}
        raise UserError(f"{path}: participants.tsv not found; is {bids_dir} a BIDS dataset root?")
    lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8-sig").split("\n")]
    lines = [line for line in lines if line.strip()]
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    if "participant_id" not in header:
        raise UserError(f"{path}: no 'participant_id' column (found: {', '.join(header) or 'nothing'}); "
                        "the first column must be participant_id")
    if "group" not in header and require_group:
        raise UserError(f"{path}: no 'group' column; add one with 'fcd' for patients and 'hc' for controls")
    out: dict[str, Participant] = {}
    for n, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        if len(values) != len(header):
            raise UserError(f"{path}: line {n} has {len(values)} fields, the header has {len(header)}; fix the row")
        row = dict(zip(header, (v.strip() for v in values)))
        pid = row["participant_id"]
        if not pid.startswith("sub-") or not _LABEL_RE.match(pid[4:]):
            raise UserError(f"{path}: line {n}: invalid participant_id '{pid}' (expected sub-<alphanumeric>)")
        if pid in out:
            raise UserError(f"{path}: participant_id '{pid}' appears twice; keep one row per subject")
        out[pid] = Participant(pid, (row.get("group") or "").strip().lower(), _na(row.get("lobe")),
                               _na(row.get("hemisphere")), _na(row.get("split")), row)
    return out


def normalise_labels(labels: Iterable[str]) -> list[str]:
    """Accept ``01`` or ``sub-01``; reject anything that could escape the dataset folder."""
    out = []
    for label in labels:
        bare = label[4:] if label.startswith("sub-") else label
        if not _LABEL_RE.match(bare):
            raise UserError(f"--participant-label '{label}' is not a valid BIDS label (letters and digits only)")
        out.append(f"sub-{bare}")
    return out


def _acq(path: Path) -> str | None:
    m = re.search(r"_acq-([A-Za-z0-9]+)_", path.name)
    return m.group(1) if m else None


def _ranked(files: list[Path], preference: list[str]) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        acq = _acq(p)
        return (preference.index(acq) if acq in preference else len(preference), p.name)

    return sorted(files, key=key)


def _is_thick(path: Path) -> bool:
    if _acq(path) in FLAIR_2D_LABELS:
        return True
    try:
        return float(voxel_sizes(nib.load(path).affine).max()) > THICK_SLICE_MM
    except Exception:
        return False  # unreadable files are reported when loaded


def unit_name(participant_id: str, session: str | None) -> str:
    """``sub-X``, or ``sub-X_ses-Y`` for one session of a subject with sessions."""
    return f"{participant_id}_{session}" if session else participant_id


def unit_subject(unit: str) -> str:
    """The ``sub-X`` a unit belongs to."""
    return unit.partition("_")[0]


def unit_path(unit: str) -> Path:
    """Where a unit's files live below a dataset root: ``sub-X`` or ``sub-X/ses-Y``."""
    subject, _, session = unit.partition("_")
    return Path(subject) / session if session else Path(subject)


def sessions(bids_dir: Path, participant_id: str) -> list[str | None]:
    """The subject's ``ses-*`` folders, or ``[None]`` when its data are not split into sessions."""
    found = sorted(p.name for p in (Path(bids_dir) / participant_id).glob("ses-*")
                   if p.is_dir() and _LABEL_RE.match(p.name[4:]))
    return found or [None]


def choose_inputs(bids_dir: Path, participant: Participant, allow_2d_flair: bool = False,
                  require_labels: bool = True, session: str | None = None) -> SubjectInputs:
    """Pick one T1w, one FLAIR (3D preferred) and the lesion mask of a subject (of one of its sessions
    when ``session`` is given); raise :class:`SubjectSkipped` if unusable.

    ``require_labels=False`` (detection): group and lobe are not checked and a mask is optional.
    """
    pid = participant.participant_id
    anat = Path(bids_dir) / pid / (session or "") / "anat"
    if not anat.is_dir():
        raise SubjectSkipped(f"{anat}: folder missing; the subject has no anatomical images")
    notes = []
    if require_labels and participant.group not in GROUPS:
        raise SubjectSkipped(f"group '{participant.group or 'n/a'}' in participants.tsv is neither 'fcd' nor 'hc'")
    label = 0
    if require_labels and participant.group == "fcd":
        if participant.lobe is None:
            raise SubjectSkipped("patient with lobe 'n/a' in participants.tsv; give the lesion's lobe")
        try:
            label = lobe_class(participant.lobe)
        except UnknownLobeError as exc:
            raise SubjectSkipped(f"participants.tsv: {exc}") from None

    t1s = _ranked(sorted(anat.glob(f"{pid}*_T1w.nii*")), T1_PREFERENCE)
    if not t1s:
        raise SubjectSkipped(f"{anat}: no T1w image ({pid}_*T1w.nii.gz); add one or exclude the subject")
    if len(t1s) > 1:
        notes.append(f"T1w: chose {t1s[0].name} over {', '.join(p.name for p in t1s[1:])}")

    flairs = sorted(anat.glob(f"{pid}*_FLAIR.nii*"))
    if not flairs:
        raise SubjectSkipped(f"{anat}: no FLAIR image ({pid}_*FLAIR.nii.gz); add one or exclude the subject")
    three_d = [f for f in flairs if not _is_thick(f)]
    if three_d:
        ranked = _ranked(three_d, FLAIR_3D_PREFERENCE)
        flair = ranked[0]
        if len(flairs) > 1:
            notes.append(f"FLAIR: chose 3D {flair.name} over {', '.join(p.name for p in flairs if p != flair)}")
    else:
        flair = flairs[0]
        if not allow_2d_flair:
            raise SubjectSkipped(f"{flair}: only a thick-slice 2D FLAIR; pass --allow-2d-flair to use it anyway")
        notes.append(f"WARNING: only a thick-slice 2D FLAIR ({flair.name}); results will be poorer")

    mask = None
    if participant.group == "fcd" or not require_labels:
        try:
            mask = _find_mask(anat, pid, flair)
        except SubjectSkipped:
            if require_labels:
                raise
        if mask is not None and _acq(mask) != _acq(flair):
            notes.append(f"mask {mask.name} has another acq label than {flair.name} but lies on its grid")
    brain_mask = _find_brain_mask(anat, pid, flair)
    if brain_mask is not None:
        notes.append(f"using the provided brain mask {brain_mask.name}")
    return SubjectInputs(pid, participant.group, t1s[0], flair, mask, label, participant.hemisphere,
                         participant.split, tuple(notes), brain_mask, session)


def _find_brain_mask(anat: Path, pid: str, flair: Path) -> Path | None:
    """A user's brain mask ``sub-X[_acq-…]_desc-brain_mask.nii.gz`` on the chosen FLAIR's grid, if any."""
    candidates = sorted(anat.glob(f"{pid}*_desc-brain_mask.nii*"))
    if not candidates:
        return None
    flair_img = nib.load(flair)
    for path in candidates:
        try:
            if same_grid(nib.load(path), flair_img):
                return path
        except Exception:
            continue
    raise SubjectSkipped(f"{candidates[0]}: brain mask is not on the grid of {flair.name}; resample it to the "
                         "FLAIR or remove it")


def _find_mask(anat: Path, pid: str, flair: Path) -> Path:
    masks = sorted(anat.glob(f"{pid}*_roi.nii*"))
    if not masks:
        raise SubjectSkipped(f"{anat}: patient without a lesion mask ({pid}_*FLAIR_roi.nii.gz); add it or "
                             "set group to something else")
    try:
        flair_img = load_volume(flair, "FLAIR")
        for mask in sorted(masks, key=lambda m: _acq(m) != _acq(flair)):  # same acq label first
            if same_grid(load_volume(mask, "lesion mask", allow_empty=True), flair_img):
                return mask
    except InputError as exc:
        raise SubjectSkipped(str(exc)) from None
    raise SubjectSkipped(f"{masks[0]}: lesion mask is on another grid than the chosen FLAIR {flair.name}; "
                         "resample it to that FLAIR's space")


def build_inventory(bids_dir: Path, participant_labels: Iterable[str] | None = None,
                    allow_2d_flair: bool = False, require_labels: bool = True) -> Inventory:
    """Choose inputs for every (selected) participant; unusable ones are listed with the reason.

    Paths are absolute, so what is recorded (meta.json, reports) does not depend on the working folder.
    """
    bids_dir = Path(bids_dir).absolute()
    if not bids_dir.is_dir():
        raise UserError(f"{bids_dir}: BIDS folder not found; check the path")
    participants = read_participants(bids_dir, require_group=require_labels)
    selected = list(participants)
    if participant_labels:
        wanted = normalise_labels(participant_labels)
        missing = [w for w in wanted if w not in participants]
        if missing:
            raise UserError(f"{bids_dir / 'participants.tsv'}: no row for {', '.join(missing)}; check "
                            "--participant-label")
        selected = wanted
    inventory = Inventory()
    for pid in selected:
        for session in sessions(bids_dir, pid):
            try:
                inventory.subjects.append(choose_inputs(bids_dir, participants[pid], allow_2d_flair,
                                                        require_labels, session))
            except SubjectSkipped as exc:
                inventory.skipped[unit_name(pid, session)] = str(exc)
    return inventory


def check_lesion_mask(mask_img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """A binary, non-empty lesion mask as bool; a clear error otherwise."""
    data = np.asanyarray(mask_img.dataobj)
    values = np.unique(data)
    if not np.all(np.isin(values, [0, 1])):
        raise SubjectSkipped(f"{path}: lesion mask is not binary (values {values[:5].tolist()}…); "
                             "save it as 0/1")
    if not values.max(initial=0):
        raise SubjectSkipped(f"{path}: lesion mask is empty; draw the lesion or mark the subject as control")
    return data.astype(bool)
