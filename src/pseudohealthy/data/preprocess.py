"""Per-subject preprocessing: native T1w + FLAIR -> normalised volumes on the template grid.

Steps: N4 bias correction; rigid T1 -> FLAIR (mutual information); affine (+ optional B-spline)
T1 -> MNI152, so FLAIR -> MNI is the composition (T1 matches the template's contrast); brain mask;
resampling of T1, FLAIR, brain mask, lesion mask and lobe map onto the template grid; intensity
normalisation inside the brain. Every transform is saved so maps can go back to native FLAIR space
(:func:`template_to_native`).

Intensity range (the networks' input everywhere): inside the brain, the [clip_low, clip_high] percentiles
of the brain are mapped linearly to [-1, 1]; below clip_low is -1, above clip_high the linear map goes on
up to ``intensity_max`` (1: clipped there); outside the brain it is -1.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from pseudohealthy import workdir
from pseudohealthy.config.schema import DataConfig
from pseudohealthy.data.bids import SubjectInputs, SubjectSkipped, check_lesion_mask
from pseudohealthy.data.registration import (
    n4_correct,
    register_affine,
    register_bspline,
    register_rigid,
)
from pseudohealthy.data.sitk_io import from_sitk, nib_to_sitk, reference, to_sitk
from pseudohealthy.io.atomic import write_json_atomic, write_with_atomic
from pseudohealthy.io.nifti import InputError, load_volume, save_nifti
from pseudohealthy.templates.grid import template_grid
from pseudohealthy.templates.lobes import load_lobe_atlas
from pseudohealthy.templates.mni import load_tissue_priors

VOLUMES = ("t1", "flair", "brain", "lesion", "lobe", "hemisphere")
VERSION = 3  # bump when the outputs change, so older work folders are redone (3: auto -> deepbet)

# Where a prepared unit's brain mask came from (meta.json ``brain_mask_source``; ``brain_mask`` says it in words).
BrainMaskSource = Literal["provided", "nonzero", "deepbet", "template"]
# How ``brain_mask`` begins for each source: what tells them apart in units prepared before
# ``brain_mask_source`` was written (same VERSION, so they are not prepared again).
_DESCRIPTION_OPENINGS: dict[BrainMaskSource, str] = {
    "provided": "provided (", "nonzero": "input nonzero", "deepbet": "deepbet", "template": "MNI152 template"}


@dataclass(frozen=True)
class Normalisation:
    """Linear map of native (bias-corrected) intensity to the network range: x' = (x − lo) / (hi − lo) · 2 − 1,
    clipped to [-1, ``top``]. ``top`` = 1 clips at the ``hi`` percentile; a larger ``top`` keeps the bright
    tail above it (a lesion is about 0.1 % of the brain, so it lies above any upper percentile a scan-wide
    normalisation can use), bounded so that an artefact cannot dominate the range."""

    lo: float
    hi: float
    top: float = 1.0

    def apply(self, x: np.ndarray, brain: np.ndarray) -> np.ndarray:
        y = np.clip((x - self.lo) / max(self.hi - self.lo, 1e-6) * 2 - 1, -1, self.top)
        return np.where(brain, y, -1.0).astype(np.float32)

    def invert(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, np.float32) + 1) / 2 * (self.hi - self.lo) + self.lo).astype(np.float32)


def fit_normalisation(data: np.ndarray, brain: np.ndarray, cfg: DataConfig) -> Normalisation:
    """The normalisation of one volume: its brain's [clip_low, clip_high] percentiles, ceiling ``intensity_max``."""
    inside = data[brain]
    return Normalisation(float(np.percentile(inside, cfg.clip_low)), float(np.percentile(inside, cfg.clip_high)),
                         cfg.intensity_max)


@cache
def _registration_template() -> tuple[sitk.Image, sitk.Image]:
    """MNI152 T1 at 2 mm and its brain mask dilated by 4 mm (the fixed image and metric mask)."""
    from nilearn import datasets

    t1 = nib_to_sitk(datasets.load_mni152_template(resolution=2))
    mask = nib_to_sitk(datasets.load_mni152_brain_mask(resolution=2), np.uint8)
    return t1, sitk.BinaryDilate(mask, [2, 2, 2])


def looks_skull_stripped(data: np.ndarray, voxel_mm3: float) -> bool:
    """Many exact zeros and a foreground no larger than a brain (< 2.2 l)."""
    nonzero = data != 0
    return bool(nonzero.mean() < 0.7 and nonzero.sum() * voxel_mm3 < 2.2e6)


def _resample(img: sitk.Image, ref: sitk.Image, transform: sitk.Transform, linear: bool = True) -> np.ndarray:
    """Resample onto ``ref``; smooth first when the target voxels are much coarser (anti-aliasing)."""
    ratio = min(ref.GetSpacing()) / max(img.GetSpacing())
    if linear and ratio > 1.5:
        img = sitk.SmoothingRecursiveGaussian(img, [0.4 * s for s in ref.GetSpacing()])
    out = sitk.Resample(img, ref, transform, sitk.sitkLinear if linear else sitk.sitkNearestNeighbor, 0.0,
                        sitk.sitkFloat32)
    return from_sitk(out)[0]


def is_done(out: Path, cfg: DataConfig) -> bool:
    """A finished subject made by this version with the same data settings."""
    if not workdir.meta_file(out).is_file():
        return False
    meta = load_meta(out)
    return meta.get("version") == VERSION and meta.get("data_config") == cfg.model_dump(mode="json")


@contextmanager
def _single_threaded_itk():
    """ITK sums per-thread partial results, so multi-threaded runs differ in the last bits from run to
    run; one thread per subject (parallelism comes from --jobs) makes preprocessing bit-reproducible."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


@_single_threaded_itk()
def preprocess_subject(inputs: SubjectInputs, cfg: DataConfig, out: Path) -> dict:
    """Preprocess one subject into ``out`` (volumes, transforms, meta.json last). Returns the meta."""
    start = time.perf_counter()
    pid = inputs.participant_id
    try:
        t1_img = load_volume(inputs.t1w, f"{pid} T1w")
        flair_img = load_volume(inputs.flair, f"{pid} FLAIR")
        lesion_native = None
        if inputs.lesion_mask is not None:
            lesion_native = check_lesion_mask(load_volume(inputs.lesion_mask, f"{pid} lesion mask", allow_empty=True),
                                              inputs.lesion_mask)
    except InputError as exc:
        raise SubjectSkipped(str(exc)) from None
    _check_overlap(t1_img, flair_img, inputs)

    t1 = n4_correct(nib_to_sitk(t1_img))
    flair = n4_correct(nib_to_sitk(flair_img))
    flair_to_t1 = register_rigid(flair, t1)  # FLAIR points -> T1 points
    fixed, fixed_mask = _registration_template()
    template_to_t1: sitk.Transform = register_affine(fixed, t1, fixed_mask)
    if cfg.nonlinear_registration:
        template_to_t1 = register_bspline(fixed, t1, fixed_mask, template_to_t1)
    template_to_flair = sitk.CompositeTransform([flair_to_t1.GetInverse(), template_to_t1])

    shape, affine = template_grid(cfg.template_voxel_mm, cfg.image_size)
    ref = reference(shape, affine)
    flair_t = _resample(flair, ref, template_to_flair)
    t1_t = _resample(t1, ref, template_to_t1)

    flair_data = np.asanyarray(flair_img.dataobj)
    stripped = cfg.brain_mask == "nonzero" or (
        cfg.brain_mask == "auto" and looks_skull_stripped(flair_data, abs(np.linalg.det(flair_img.affine[:3, :3]))))
    brain_source: BrainMaskSource
    if inputs.brain_mask is not None and cfg.brain_mask != "template":
        try:
            user_mask = np.asanyarray(load_volume(inputs.brain_mask, f"{pid} brain mask").dataobj) > 0
        except InputError as exc:
            raise SubjectSkipped(str(exc)) from None
        brain = _resample(to_sitk(user_mask.astype(np.float32), flair_img.affine), ref, template_to_flair) > 0.5
        brain_source, brain_description = "provided", f"provided ({inputs.brain_mask.name})"
    elif stripped:
        brain = _resample(to_sitk((flair_data != 0).astype(np.float32), flair_img.affine), ref,
                          template_to_flair) > 0.5
        brain_source, brain_description = "nonzero", "input nonzero (skull-stripped)"
    elif cfg.brain_mask in ("deepbet", "auto"):  # auto: a whole-head input gets a learned brain extraction
        brain = _resample(nib_to_sitk(learned_brain_mask(t1_img)), ref, template_to_t1) > 0.5
        brain_source, brain_description = "deepbet", "deepbet on the T1w"
    else:
        brain_source, brain_description = "template", "MNI152 template mask"
        priors = load_tissue_priors()
        brain = _resample(to_sitk(priors.brain.astype(np.float32), priors.affine), ref, sitk.Transform()) > 0.5
    atlas = load_lobe_atlas()
    lobe = _resample(to_sitk(atlas.lobe.astype(np.float32), atlas.affine), ref, sitk.Transform(), linear=False)
    hemisphere = _resample(to_sitk(atlas.hemisphere.astype(np.float32), atlas.affine), ref, sitk.Transform(),
                           linear=False)
    lesion = np.zeros(shape, np.float32)
    if lesion_native is not None:
        lesion = _resample(to_sitk(lesion_native.astype(np.float32), flair_img.affine), ref, template_to_flair)

    norms = {}
    volumes = {"brain": brain.astype(np.uint8), "lobe": lobe.astype(np.uint8),
               "hemisphere": hemisphere.astype(np.uint8), "lesion": lesion}
    for name, data in (("t1", t1_t), ("flair", flair_t)):
        norms[name] = fit_normalisation(data, brain, cfg)
        volumes[name] = norms[name].apply(data, brain)

    out.mkdir(parents=True, exist_ok=True)
    for name, data in volumes.items():
        save_nifti(workdir.volume_file(out, name), data, affine)
    _save_transform(flair_to_t1, workdir.flair_to_t1_file(out))
    _save_transform(template_to_t1, workdir.template_to_t1_file(out))
    meta = {
        "version": VERSION,
        "participant_id": inputs.unit,  # the unit of work: sub-X, or sub-X_ses-Y for one session
        "subject": pid,
        "session": inputs.session,
        "group": inputs.group,
        "label": inputs.label,
        "hemisphere": inputs.hemisphere,
        "split": inputs.split,
        "inputs": {"t1w": str(inputs.t1w), "flair": str(inputs.flair),
                   "lesion_mask": str(inputs.lesion_mask) if inputs.lesion_mask else None},
        "notes": list(inputs.notes),
        "native_flair": {"shape": list(flair_img.shape[:3]), "affine": np.asarray(flair_img.affine).tolist()},
        "template_grid": {"shape": list(shape), "affine": affine.tolist()},
        "normalisation": {k: asdict(v) for k, v in norms.items()},
        "brain_mask": brain_description,
        "brain_mask_source": brain_source,
        "lesion_voxels_template": int((lesion > 0.5).sum()),
        "data_config": cfg.model_dump(mode="json"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(workdir.meta_file(out), meta)
    return meta


def _check_overlap(t1_img: nib.Nifti1Image, flair_img: nib.Nifti1Image, inputs: SubjectInputs) -> None:
    """T1 and FLAIR must cover the same head in world space, or registration cannot start."""
    def box(img):
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in img.shape[:3]], indexing="ij")).reshape(3, -1)
        world = img.affine[:3, :3] @ corners + img.affine[:3, 3:4]
        return world.min(axis=1), world.max(axis=1)

    (a_lo, a_hi), (b_lo, b_hi) = box(t1_img), box(flair_img)
    overlap = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None)
    if np.prod(overlap) < 0.1 * np.prod(b_hi - b_lo):
        raise SubjectSkipped(f"{inputs.t1w} and {inputs.flair} barely overlap in world space; check their "
                             "headers (qform/sform) — they must come from the same session")


def _save_transform(transform: sitk.Transform, path: Path) -> None:
    write_with_atomic(path, lambda tmp: sitk.WriteTransform(transform, str(tmp)), suffix=path.suffix)


def load_meta(out: Path) -> dict:
    return json.loads(workdir.meta_file(out).read_text())


def brain_mask_source(meta: dict) -> BrainMaskSource:
    """Where a prepared unit's brain mask came from (its ``meta``); for a unit prepared before meta.json held
    ``brain_mask_source``, read from how its description (``brain_mask``) begins."""
    if "brain_mask_source" in meta:
        return meta["brain_mask_source"]
    for source, opening in _DESCRIPTION_OPENINGS.items():
        if meta["brain_mask"].startswith(opening):
            return source
    raise ValueError(f"brain mask {meta['brain_mask']!r}: not a description that prepare writes")


def prepared_inputs(out: Path) -> SubjectInputs:
    """The inputs a prepared unit was made from (its meta.json): to run ``detect`` on it again."""
    meta = load_meta(out)
    files = meta["inputs"]
    return SubjectInputs(
        participant_id=meta.get("subject") or meta["participant_id"], group=meta["group"], t1w=Path(files["t1w"]),
        flair=Path(files["flair"]), lesion_mask=Path(files["lesion_mask"]) if files["lesion_mask"] else None,
        label=int(meta["label"] or 0), hemisphere=meta["hemisphere"], split=meta["split"],
        notes=tuple(meta["notes"]), session=meta.get("session"))


@cache
def _brain_extractor():
    from deepbet import BrainExtraction  # imported here: loads two networks that only this option needs

    return BrainExtraction(no_gpu=True)


def learned_brain_mask(t1w: nib.Nifti1Image) -> nib.Nifti1Image:
    """deepbet's brain mask of a whole-head T1w (its own grid, uint8), on the CPU; weights come inside
    the deepbet wheel, nothing is downloaded."""
    _, mask, _ = _brain_extractor().run(t1w)
    return mask


def template_to_flair_transform(out: Path) -> sitk.Transform:
    """The saved mapping template points -> native FLAIR points for a preprocessed subject."""
    flair_to_t1 = sitk.ReadTransform(str(workdir.flair_to_t1_file(out)))
    template_to_t1 = sitk.ReadTransform(str(workdir.template_to_t1_file(out)))
    return sitk.CompositeTransform([flair_to_t1.GetInverse(), template_to_t1])


class NativeMapper:
    """Maps template-grid volumes of one preprocessed subject back onto its native FLAIR grid.

    The saved transforms are read and inverted once, so mapping several maps costs one inversion.
    """

    def __init__(self, out: Path):
        meta = load_meta(out)
        grid, native = meta["template_grid"], meta["native_flair"]
        self.template_shape = tuple(grid["shape"])
        self.template_affine = np.asarray(grid["affine"])
        self.native_affine = np.asarray(native["affine"])
        self.native_ref = reference(tuple(native["shape"]), self.native_affine)
        self.inverse = _invert(template_to_flair_transform(out), reference(self.template_shape, self.template_affine))

    def template_mm(self, native_ras_mm) -> list[float]:
        """A native FLAIR point (scanner RAS, mm) in template (MNI152) RAS coordinates."""
        x, y, z = (float(v) for v in native_ras_mm)
        tx, ty, tz = self.inverse.TransformPoint((-x, -y, z))  # SimpleITK works in LPS
        return [round(-tx, 1), round(-ty, 1), round(tz, 1)]

    def __call__(self, volume: np.ndarray, linear: bool = True) -> nib.Nifti1Image:
        if tuple(volume.shape) != self.template_shape:
            raise ValueError(f"volume shape {volume.shape} is not the template grid {self.template_shape}")
        data = _resample(to_sitk(volume.astype(np.float32), self.template_affine), self.native_ref, self.inverse,
                         linear)
        return nib.Nifti1Image(data.astype(np.float32), self.native_affine)


    def t1_on_flair_grid(self, out: Path, t1w: Path) -> nib.Nifti1Image:
        """The subject's own T1w (whole head, not bias-corrected) resampled onto its FLAIR grid through the
        saved rigid registration: for the report, and to check that registration by eye."""
        flair_to_t1 = sitk.ReadTransform(str(workdir.flair_to_t1_file(out)))  # FLAIR points -> T1 points
        data = _resample(nib_to_sitk(load_volume(t1w, "T1w")), self.native_ref, flair_to_t1)
        return nib.Nifti1Image(data.astype(np.float32), self.native_affine)


def t1_mask_on_flair_grid(out: Path, mask: nib.Nifti1Image, flair: nib.Nifti1Image) -> np.ndarray:
    """A mask on the T1w grid (e.g. ``learned_brain_mask``) carried onto the FLAIR grid through the subject's
    saved rigid registration (bool)."""
    flair_to_t1 = sitk.ReadTransform(str(workdir.flair_to_t1_file(out)))  # FLAIR points -> T1 points
    return _resample(nib_to_sitk(mask), reference(flair.shape[:3], flair.affine), flair_to_t1) > 0.5


def template_to_native(volume: np.ndarray, out: Path, linear: bool = True) -> nib.Nifti1Image:
    """Map a template-grid volume of a preprocessed subject back onto its native FLAIR grid."""
    return NativeMapper(out)(volume, linear)


def _invert(transform: sitk.Transform, template_ref: sitk.Image) -> sitk.Transform:
    """Inverse of template -> FLAIR: exact for linear parts, by displacement-field inversion otherwise."""
    try:
        return transform.GetInverse()
    except RuntimeError:  # B-spline inside: invert a dense field on the template grid
        field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, template_ref.GetSize(),
                                                  template_ref.GetOrigin(), template_ref.GetSpacing(),
                                                  template_ref.GetDirection())
        return sitk.DisplacementFieldTransform(sitk.InvertDisplacementField(field))
