"""Plan and render one synthetic subject: tissue maps -> contrasts -> scanner grids -> NIfTI files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit

from pseudohealthy import __version__
from pseudohealthy.io.atomic import write_json_atomic
from pseudohealthy.io.nifti import save_nifti
from pseudohealthy.metrics import lesion_contrast
from pseudohealthy.phantom import artefacts
from pseudohealthy.phantom.contrast import (
    FLAIR,
    NOISE_AT_1P5T,
    T1W,
    Sequence,
    jittered_tissues,
    realistic_tissues,
    tissue_signals,
)
from pseudohealthy.phantom.fcd_range import FirstScan, add_graded_lesion
from pseudohealthy.phantom.geometry import (
    Deformation,
    Grid,
    make_grid,
    pull_template_voxels,
    random_deformation,
    random_rigid,
    smooth_bias_field,
)
from pseudohealthy.phantom.lesion import LesionSpec, TissueMaps, add_lesion, add_periventricular_caps
from pseudohealthy.phantom.normal_variants import add_normal_variants
from pseudohealthy.phantom.readback import deformation_path
from pseudohealthy.phantom.realism import CONFOUNDS, stream
from pseudohealthy.templates.mni import load_tissue_priors


@dataclass(frozen=True)
class Protocol:
    """One acquisition: array axis directions, voxel size (per array axis) and thick-slice flag.

    Voxels are coarser than the real scans (e.g. acq-iso08 is 0.8 mm there) so that a dataset
    is made in minutes; the labels and orientations follow ds004199.
    """

    axcodes: str
    voxel_mm: tuple[float, float, float]
    thick_slices: bool = False


T1_PROTOCOLS = {"iso08": Protocol("RAS", (1.2, 1.2, 1.2)), "sag111": Protocol("ASL", (1.3, 1.3, 1.3))}
T1_WEIGHTS = {"iso08": 120, "sag111": 49}
FLAIR_PROTOCOLS = {"T2sel": Protocol("PIL", (1.1, 1.1, 1.2)), "tse3dvfl": Protocol("LPS", (1.1, 1.1, 1.3))}
FLAIR_WEIGHTS = {"T2sel": 126, "tse3dvfl": 36}
THICK_FLAIR_PROTOCOLS = {"tra4mm": Protocol("RAS", (1.2, 1.2, 4.0), thick_slices=True)}
FIELD_OF_VIEW_MM = (185.0, 225.0, 195.0)


@dataclass(frozen=True)
class SubjectPlan:
    """Everything about a subject decided at dataset level (before rendering)."""

    index: int
    participant_id: str
    group: str  # "fcd" or "hc"
    age: int | None
    sex: str
    split: str
    t1_acq: str
    flair_acq: str
    mask_acq: str | None  # None for controls; differs from flair_acq for one patient
    thick_flair_acq: str | None
    lesion: LesionSpec | None
    histopathology: str | None
    caps: bool
    sessions: int = 1  # > 1: the subject is scanned again in further sessions (ses-1, ses-2, ...)
    # realism.py: "realistic" (the default, as Realism()'s) adds the confounds named and forces those in
    # ``always``; "legacy" (with no confounds) renders the images of the generator before them. The
    # subject's scanner field strength (T).
    realism: str = "realistic"
    confounds: tuple[str, ...] = tuple(CONFOUNDS)
    always: tuple[str, ...] = ()
    field_strength_t: float = 3.0

    @property
    def lobe(self) -> str | None:
        return ",".join(self.lesion.lobes) if self.lesion else None


@cache
def _head_distance() -> np.ndarray:
    """Distance (mm) outside the template brain: drives scalp and skull shells around it."""
    return ndi.distance_transform_edt(~load_tissue_priors().brain).astype(np.float32)


def _band(x: np.ndarray, lo: float, hi: float, soft: float = 0.6) -> np.ndarray:
    return expit((x - lo) / soft) * expit((hi - x) / soft)


def _add_head(s: np.ndarray, outside: np.ndarray, signals: dict[str, float]) -> np.ndarray:
    """Add to ``s`` (in place) the head around the brain by distance ``outside`` it (mm): CSF, skull, scalp
    fat. In two steps, the order the legacy images were made with (float rounding)."""
    s += signals["csf"] * _band(outside, 0.0, 2.5) + signals["bone"] * _band(outside, 2.5, 8.0)
    s += signals["fat"] * _band(outside, 8.0, 13.0)
    return s


def _template_signal(maps: TissueMaps, signals: dict[str, float], outside: np.ndarray) -> np.ndarray:
    """Partial-volume signal on the template grid, head shells included."""
    s = (maps.gm * signals["gm"] + maps.wm * signals["wm"] + maps.csf * signals["csf"]
         + maps.fcd * signals["fcd"] + maps.cap * signals["cap"])
    s = _add_head(s, outside, signals).astype(np.float32)
    for name, box, fraction in maps.patches:
        s[box] += fraction * np.float32(signals[name])
    return s


@dataclass
class _Scene:
    """A subject's geometry: how each scanner frame maps to the template."""

    deformation: Deformation
    pose: np.ndarray  # anatomical -> T1 world
    motion: np.ndarray  # T1 world -> FLAIR world
    head_center_world: np.ndarray


@cache
def _brain_center() -> np.ndarray:
    priors = load_tissue_priors()
    return (priors.affine @ np.r_[np.argwhere(priors.brain).mean(axis=0), 1.0])[:3]


def _make_scene(rng: np.random.Generator) -> _Scene:
    deformation = random_deformation(rng, _brain_center(), amplitude_mm=2.0, scale_range=0.06)
    return _placed(deformation, rng)


def _placed(deformation: Deformation, rng: np.random.Generator) -> _Scene:
    """A head (its deformation) placed in the scanner: a random pose, and the motion between T1w and FLAIR."""
    center = _brain_center()
    pose = random_rigid(rng, max_angle_deg=8.0, max_shift_mm=8.0, center_mm=center)
    motion = random_rigid(rng, max_angle_deg=3.0, max_shift_mm=3.0, center_mm=pose[:3, :3] @ center + pose[:3, 3])
    return _Scene(deformation, pose, motion, pose[:3, :3] @ center + pose[:3, 3])


@dataclass
class _Scanner:
    """The realistic scanner's part in one scan: which confounds, their streams, and what they did."""

    confounds: tuple[str, ...]
    always: tuple[str, ...]
    noise_factor: float
    streams: dict[str, np.random.Generator]
    records: list[dict]
    # The gain's reference: the 99.5th percentile of the anatomy as sampled, before the scanner's confounds
    # (a scanner's gain does not follow an inflow artefact).
    scale_reference: float = 0.0


def _acquire(rng: np.random.Generator, template_signal: np.ndarray, protocol: Protocol, scene: _Scene,
             world_to_anat: np.ndarray, center_world: np.ndarray, extra_maps: tuple[np.ndarray, ...] = (),
             scanner: _Scanner | None = None, inflow: list[tuple[tuple[slice, ...], np.ndarray]] = ()
             ) -> tuple[Grid, np.ndarray, list[np.ndarray]]:
    """Sample the template-space signal on a scanner grid, add bias field and Rician noise (and, with a
    realistic ``scanner``, the CSF ``inflow`` pieces (box, signal), residual non-uniformity, motion ringing
    and field-strength noise, after taking the gain's reference from the anatomy alone)."""
    grid = make_grid(protocol.axcodes, protocol.voxel_mm, FIELD_OF_VIEW_MM, center_world + rng.uniform(-5, 5, 3))
    offsets = np.array([-0.375, -0.125, 0.125, 0.375]) if protocol.thick_slices else None
    affine = np.asarray(load_tissue_priors().affine)
    coords = pull_template_voxels(grid, world_to_anat, scene.deformation, affine, offsets)
    n_sub = 1 if offsets is None else len(offsets)

    def sample(volume: np.ndarray) -> np.ndarray:
        values = ndi.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0, output=np.float32)
        return values.reshape(n_sub, *grid.shape).mean(axis=0)

    bias = smooth_bias_field(rng, grid, strength=0.25)
    clean = sample(template_signal) * bias
    sigma = float(rng.uniform(0.015, 0.03)) * float(np.percentile(clean[clean > 0.05 * clean.max()], 50))
    if scanner is not None:
        scanner.scale_reference = float(np.percentile(clean, 99.5))
        for box, piece in inflow:
            clean += _sample_box(piece, box, coords).reshape(n_sub, *grid.shape).mean(axis=0) * bias
        sigma *= scanner.noise_factor
        clean = _scanner_artefacts(scanner, clean, grid, protocol, center_world)
    noisy = np.hypot(clean + sigma * rng.standard_normal(grid.shape, dtype=np.float32),
                     sigma * rng.standard_normal(grid.shape, dtype=np.float32))
    return grid, noisy, [sample(m) for m in extra_maps]


def _sample_box(piece: np.ndarray, box: tuple[slice, ...], coords: np.ndarray) -> np.ndarray:
    """Trilinear samples at template voxel ``coords`` (3, N) of a volume that is ``piece`` over ``box`` and 0
    elsewhere, computed only where the box reaches."""
    local = coords - np.array([b.start for b in box], np.float32)[:, None]
    near = np.all((local > -1) & (local < np.array(piece.shape, np.float32)[:, None]), axis=0)
    values = np.zeros(coords.shape[1], np.float32)
    values[near] = ndi.map_coordinates(piece, local[:, near], order=1, mode="grid-constant", cval=0.0)
    return values


def _scanner_artefacts(scanner: _Scanner, clean: np.ndarray, grid: Grid, protocol: Protocol,
                       center_world: np.ndarray) -> np.ndarray:
    """Residual non-uniformity and motion ringing on the scan's grid, as the scanner's confounds say."""
    if "residual_nonuniformity" in scanner.confounds:
        field, record = artefacts.residual_nonuniformity(scanner.streams["residual_nonuniformity"], grid,
                                                         center_world)
        clean = clean * field
        scanner.records.append(record)
    if "motion_ringing" in scanner.confounds:
        clean, record = artefacts.motion_ringing(scanner.streams["motion_ringing"], clean, grid, protocol.axcodes,
                                                 "motion_ringing" in scanner.always)
        if record:
            scanner.records.append(record)
    return clean


def _to_int16(image: np.ndarray, rng: np.random.Generator, reference: float | None = None) -> np.ndarray:
    """Scanner gain: the 99.5th percentile (of ``reference``'s image, if given) maps to 900–1400."""
    level = float(np.percentile(image, 99.5)) if reference is None else reference
    scale = rng.uniform(900.0, 1400.0) / max(level, 1e-6)
    return np.clip(np.rint(image * scale), 0, 32767).astype(np.int16)


def sidecar(seq: Sequence, acq: str, thick: bool = False, field_t: float = 3.0) -> dict:
    meta = {
        "Manufacturer": "pseudohealthy phantom",
        "MagneticFieldStrength": 3 if field_t == 3.0 else field_t,
        "RepetitionTime": seq.tr_ms / 1000,
        "InversionTime": seq.ti_ms / 1000,
        "EchoTime": seq.te_ms / 1000,
        "MRAcquisitionType": "2D" if thick else "3D",
        "ManufacturersModelName": "synthetic",
        "SoftwareVersions": __version__,
        "ScanningSequence": "IR",
        "SequenceVariant": "SP" if seq is T1W else "SK",
        "SequenceName": f"phantom_{seq.name}",
        "PulseSequenceType": "inversion recovery",
        "SeriesDescription": f"synthetic {seq.name} acq-{acq}",
    }
    return meta


def anat_name(pid: str, acq: str, suffix: str, session: str | None = None) -> str:
    return f"{pid}_{session}_acq-{acq}_{suffix}" if session else f"{pid}_acq-{acq}_{suffix}"


def render_subject(plan: SubjectPlan, seed: int, bids_root: Path, truth_dir: Path) -> dict:
    """Write the subject's NIfTI files and sidecars under ``bids_root`` and its deformation under
    ``truth_dir``; return its ground truth. A subject with ``plan.sessions`` > 1 is scanned again in
    each further session (same anatomy and lesion; new head pose, motion, contrast, bias and noise), all
    sessions under ``sub-X/ses-K/anat``; ``truth["sessions"]`` then holds each session's geometry.

    A realistic plan (``plan.realism``) adds its confounds: normal variants to the anatomy (recorded in
    ``truth["normal_variants"]``), and per session the scanner's (``truth["scanner"]``); they draw from
    streams of their own, so the lesion, the head pose and the noise are the same with or without them."""
    rng = np.random.default_rng([seed, plan.index])
    priors = load_tissue_priors()
    maps = TissueMaps.from_priors(priors)
    realistic = plan.realism == "realistic"
    truth: dict = {"participant_id": plan.participant_id, "group": plan.group, "plan": _plan_dict(plan)}
    if plan.lesion is not None and plan.lesion.flair_ratio is not None:
        lesion, graded = add_graded_lesion(maps, plan.lesion, rng, seed, plan.index, _first_flair(plan))
        truth["lesion"] = {**asdict(lesion), **graded}
    elif plan.lesion is not None:
        truth["lesion"] = asdict(add_lesion(maps, plan.lesion, rng))
    if plan.caps and not realistic:
        truth["periventricular_caps_strength"] = round(add_periventricular_caps(maps, rng), 3)
    if realistic:
        truth["normal_variants"] = add_normal_variants(maps, seed, plan.index, plan.confounds, plan.always,
                                                       plan.field_strength_t, plan.age, plan.caps)

    scene = _make_scene(rng)
    outside = _head_distance()
    if plan.sessions == 1:
        scans = {None: _scan(plan, None, rng, maps, jittered_tissues(rng), outside, scene, bids_root, seed)}
    else:
        scans = {}
        for k in range(1, plan.sessions + 1):
            session_rng = rng if k == 1 else np.random.default_rng([seed, plan.index, k])
            session_scene = scene if k == 1 else _placed(scene.deformation, session_rng)  # placed anew
            scans[f"ses-{k}"] = _scan(plan, f"ses-{k}", session_rng, maps, jittered_tissues(session_rng), outside,
                                      session_scene, bids_root, seed)
        truth["sessions"] = scans
    first = next(iter(scans.values()))  # the first session stands for the subject
    truth["geometry"] = first["geometry"]
    if "scanner" in first:
        truth["scanner"] = first["scanner"]
    if "lesion_native" in first:
        truth["lesion"].update(first["lesion_native"])
    if realistic:
        _locate(truth["normal_variants"], scene)
    scene.deformation.save(deformation_path(truth_dir, plan.participant_id))
    return truth


def _first_flair(plan: SubjectPlan) -> Callable[[np.random.Generator], FirstScan]:
    """What the first FLAIR will be (fcd_range.FirstScan), from the subject's stream where the lesion's
    draws end (render_subject draws the scene, then the tissues, next)."""
    def first(rng: np.random.Generator) -> FirstScan:
        scene = _make_scene(rng)
        tissues = jittered_tissues(rng)
        at_3t = tissue_signals(realistic_tissues(tissues, 3.0), FLAIR)
        at_field = (at_3t if plan.field_strength_t == 3.0
                    else tissue_signals(realistic_tissues(tissues, plan.field_strength_t), FLAIR))
        protocol = FLAIR_PROTOCOLS[plan.flair_acq]
        grid_steps = make_grid(protocol.axcodes, protocol.voxel_mm, FIELD_OF_VIEW_MM, np.zeros(3)).affine[:3, :3]
        anat_steps = np.linalg.inv(scene.motion @ scene.pose)[:3, :3] @ grid_steps
        affine = load_tissue_priors().affine

        def steps(center_vox: np.ndarray) -> np.ndarray:
            point = scene.deformation.from_template_mm((affine[:3, :3] @ center_vox + affine[:3, 3])[:, None])
            jacobian = np.stack([(scene.deformation.to_template_mm(point + d) - scene.deformation.to_template_mm(
                point - d))[:, 0] / 2.0 for d in np.eye(3)[:, :, None]], axis=1)
            return np.linalg.inv(affine[:3, :3]) @ jacobian @ anat_steps

        def head(box: tuple[slice, ...], signals: dict[str, float]) -> np.ndarray:
            outside = _head_distance()[box]
            return _add_head(np.zeros(outside.shape, np.float32), outside, signals)
        return FirstScan(at_3t, at_field, steps, head, float(np.prod(protocol.voxel_mm)))
    return first


def _template_to_flair_world(scene: _Scene, points_mm: np.ndarray) -> np.ndarray:
    """(3, N) template mm -> FLAIR world mm of the scan placed by ``scene``."""
    anat = scene.deformation.from_template_mm(points_mm)
    world = scene.pose[:3, :3] @ anat + scene.pose[:3, 3:4]
    return scene.motion[:3, :3] @ world + scene.motion[:3, 3:4]


def _locate(records: list[dict], scene: _Scene) -> None:
    """Add each record's place in the (first) FLAIR's world frame, for readers of the truth."""
    located = [r for r in records if "center_template_mm" in r]
    if located:
        world = _template_to_flair_world(scene, np.array([r["center_template_mm"] for r in located], float).T)
        for r, w in zip(located, world.T):
            r["center_flair_world_mm"] = np.round(w, 1).tolist()


_SCAN_KEYS = {"T1w": 0, "FLAIR": 1, "FLAIR_thick": 2}


def _scanner(plan: SubjectPlan, seed: int, session: int, scan: str) -> _Scanner | None:
    """The realistic scanner of one scan: its confounds and their streams (None for a legacy plan)."""
    if plan.realism != "realistic":
        return None
    key = (session, _SCAN_KEYS[scan])
    names = ("residual_nonuniformity", "motion_ringing", "csf_inflow")
    return _Scanner(plan.confounds, plan.always, NOISE_AT_1P5T if plan.field_strength_t == 1.5 else 1.0,
                    {n: stream(seed, plan.index, n, *key) for n in names}, [])


def _inflow(scanner: _Scanner | None, signals: dict[str, float], two_d: bool
            ) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """The CSF inflow of one FLAIR scan as (box, template-grid signal) pieces, recorded in its scanner."""
    if scanner is None or "csf_inflow" not in scanner.confounds:
        return []
    pieces, records = artefacts.csf_inflow(scanner.streams["csf_inflow"], two_d, "csf_inflow" in scanner.always,
                                           signals["gm"])
    scanner.records += records
    return pieces


@dataclass
class _Session:
    """One session being written: the subject's plan, the session's folder, geometry, random stream and
    (realistic plans) the scanner of each scan."""

    plan: SubjectPlan
    name: str | None  # "ses-K"; None for a subject scanned once
    anat: Path
    scene: _Scene
    rng: np.random.Generator
    scanners: dict[str, _Scanner | None]

    def acquire(self, scan: str, signal: np.ndarray, protocol: Protocol, extra_maps: tuple[np.ndarray, ...] = (),
                inflow: list[tuple[tuple[slice, ...], np.ndarray]] = ()) -> tuple[Grid, np.ndarray, list[np.ndarray]]:
        """:func:`_acquire` in the world of ``scan``: the T1w's, or the FLAIR's (the head moved between them)."""
        world_to_anat, center = np.linalg.inv(self.scene.pose), self.scene.head_center_world
        if scan != "T1w":
            world_to_anat = world_to_anat @ np.linalg.inv(self.scene.motion)
            center = self.scene.motion[:3, :3] @ center + self.scene.motion[:3, 3]
        return _acquire(self.rng, signal, protocol, self.scene, world_to_anat, center, extra_maps,
                        self.scanners[scan], inflow)

    def save(self, scan: str, acq: str, suffix: str, image: np.ndarray, grid: Grid, seq: Sequence) -> None:
        """Write an image at its scanner's gain, and its sidecar."""
        scanner = self.scanners[scan]
        name = anat_name(self.plan.participant_id, acq, suffix, self.name)
        gain_reference = scanner.scale_reference if scanner is not None else None
        save_nifti(self.anat / f"{name}.nii.gz", _to_int16(image, self.rng, gain_reference), grid.affine)
        write_json_atomic(self.anat / f"{name}.json",
                          sidecar(seq, acq, thick=scan == "FLAIR_thick", field_t=self.plan.field_strength_t))


def _scan(plan: SubjectPlan, session: str | None, rng: np.random.Generator, maps: TissueMaps,
          tissues: dict, outside: np.ndarray, scene: _Scene, bids_root: Path, seed: int) -> dict:
    """Acquire and write one session's T1w, FLAIR (lesion mask, thick FLAIR); return what the truth keeps
    of it: native lesion statistics, the geometry and (realistic plans) the scanner's confounds."""
    k = int(session.split("-")[1]) if session else 1
    ses = _Session(plan, session, bids_root / plan.participant_id / (session or "") / "anat", scene, rng,
                   {name: _scanner(plan, seed, k, name) for name in _SCAN_KEYS})
    if plan.realism == "realistic":
        tissues = realistic_tissues(tissues, plan.field_strength_t)
    _write_t1w(ses, maps, tissues, outside)
    truth = _write_flairs(ses, maps, tissues, outside)
    truth["geometry"] = _geometry(scene)
    if plan.realism == "realistic":
        truth["scanner"] = _scanner_truth(ses)
    return truth


def _write_t1w(ses: _Session, maps: TissueMaps, tissues: dict, outside: np.ndarray) -> None:
    signal = _template_signal(maps, tissue_signals(tissues, T1W), outside)
    grid, image, _ = ses.acquire("T1w", signal, T1_PROTOCOLS[ses.plan.t1_acq])
    ses.save("T1w", ses.plan.t1_acq, "T1w", image, grid, T1W)


def _write_flairs(ses: _Session, maps: TissueMaps, tissues: dict, outside: np.ndarray) -> dict:
    """The 3D FLAIR with the lesion mask on its grid, and the thick 2D FLAIR if planned; returns the lesion's
    native statistics (``lesion_native``, patients only)."""
    plan, truth = ses.plan, {}
    signals = tissue_signals(tissues, FLAIR)
    signal = _template_signal(maps, signals, outside)
    grid, image, extra = ses.acquire("FLAIR", signal, FLAIR_PROTOCOLS[plan.flair_acq],
                                     (maps.lesion_mask,) if plan.lesion else (),
                                     _inflow(ses.scanners["FLAIR"], signals, two_d=False))
    ses.save("FLAIR", plan.flair_acq, "FLAIR", image, grid, FLAIR)
    if plan.lesion is not None:
        mask = extra[0] > 0.5
        save_nifti(ses.anat / f"{anat_name(plan.participant_id, plan.mask_acq, 'FLAIR_roi', ses.name)}.nii.gz",
                   mask.astype(np.uint8), grid.affine)
        truth["lesion_native"] = _native_lesion_stats(mask, image, grid)
    if plan.thick_flair_acq is not None:
        grid, image, _ = ses.acquire("FLAIR_thick", signal, THICK_FLAIR_PROTOCOLS[plan.thick_flair_acq],
                                     inflow=_inflow(ses.scanners["FLAIR_thick"], signals, two_d=True))
        ses.save("FLAIR_thick", plan.thick_flair_acq, "FLAIR", image, grid, FLAIR)
    return truth


def _geometry(scene: _Scene) -> dict:
    """What the truth keeps of a session's geometry (the deformation itself is saved beside it)."""
    return {
        "anatomical_to_t1w_world": np.round(scene.pose, 6).tolist(),
        "t1w_world_to_flair_world": np.round(scene.motion, 6).tolist(),
        "scale": np.round(scene.deformation.scale, 4).tolist(),
        "deformation_rms_mm": 2.0,
    }


def _scanner_truth(ses: _Session) -> dict:
    """The field strength, noise factor, and per scan its acq label and artefacts (placed in FLAIR world)."""
    plan = ses.plan
    acqs = {"T1w": plan.t1_acq, "FLAIR": plan.flair_acq, "FLAIR_thick": plan.thick_flair_acq}
    scans = {}
    for scan, scanner in ses.scanners.items():
        if acqs[scan] is not None:
            _locate(scanner.records, ses.scene)
            scans[scan] = {"acq": acqs[scan], "artefacts": scanner.records}
    return {"field_strength_t": plan.field_strength_t, "noise_factor": ses.scanners["T1w"].noise_factor,
            "scans": scans}


def _native_lesion_stats(mask: np.ndarray, flair: np.ndarray, grid: Grid) -> dict:
    """Lesion volume, centroid (FLAIR world mm) and its FLAIR contrast against a surrounding shell."""
    voxel_mm3 = float(abs(np.linalg.det(grid.affine[:3, :3])))
    ijk = np.argwhere(mask).mean(axis=0) if mask.any() else np.full(3, np.nan)
    centroid = grid.affine[:3, :3] @ ijk + grid.affine[:3, 3]
    ratio = lesion_contrast(mask, flair)
    return {
        "volume_mm3": round(float(mask.sum()) * voxel_mm3, 1),
        "centroid_flair_world_mm": np.round(centroid, 2).tolist(),
        "flair_contrast_ratio": round(ratio, 3),
    }


def _plan_dict(plan: SubjectPlan) -> dict:
    d = asdict(plan)
    d.pop("index")
    return d
