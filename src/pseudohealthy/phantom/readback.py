"""Reading a written phantom back: where a subject's first scan lies, its template deformation, the known
mapping from its FLAIR world to template mm and its true brain mask (for previews, tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.phantom.geometry import Deformation
from pseudohealthy.templates.mni import load_tissue_priors


def first_scan(bids_root: Path, subject_truth: dict) -> tuple[Path, str]:
    """The anat folder and file-name prefix of a subject's first (or only) session."""
    pid = subject_truth["participant_id"]
    session = next(iter(subject_truth.get("sessions", {})), None)
    return Path(bids_root) / pid / (session or "") / "anat", f"{pid}_{session}" if session else pid


def deformation_path(truth_dir: Path, participant_id: str) -> Path:
    return Path(truth_dir) / "geometry" / f"{participant_id}_deformation.npz"


def flair_world_to_template_mm(subject_truth: dict, truth_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The known mapping from a subject's FLAIR world (mm) to MNI template mm, from its ground truth."""
    geometry = subject_truth["geometry"]
    world_to_anat = np.linalg.inv(np.asarray(geometry["anatomical_to_t1w_world"])) @ np.linalg.inv(
        np.asarray(geometry["t1w_world_to_flair_world"]))
    deformation = Deformation.load(deformation_path(truth_dir, subject_truth["participant_id"]))

    def mapping(points: np.ndarray) -> np.ndarray:
        anat = world_to_anat[:3, :3] @ points + world_to_anat[:3, 3:4]
        return deformation.to_template_mm(anat.astype(np.float32))

    return mapping


def true_brain_mask(subject_truth: dict, truth_dir: Path, flair: nib.Nifti1Image) -> np.ndarray:
    """The phantom's true brain on its FLAIR grid: the MNI152 brain mask carried through the subject's known
    deformation and poses (what a brain extraction should find). Bool, the FLAIR's shape."""
    priors = load_tissue_priors()
    ijk = np.indices(flair.shape[:3]).reshape(3, -1).astype(np.float32)
    world = flair.affine[:3, :3] @ ijk + flair.affine[:3, 3:4]
    template_mm = flair_world_to_template_mm(subject_truth, truth_dir)(world)
    inverse = np.linalg.inv(priors.affine)
    vox = inverse[:3, :3] @ template_mm + inverse[:3, 3:4]
    inside = ndi.map_coordinates(priors.brain.astype(np.float32), vox, order=1, mode="constant", cval=0.0)
    return inside.reshape(flair.shape[:3]) > 0.5
