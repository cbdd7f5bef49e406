"""Scanner realism: what the scanner adds to a scan, and how often.

- csf_inflow: CSF that flows into the imaged volume after the inversion is not nulled and shows bright on
  FLAIR in the fourth and third ventricles, the foramina of Monro and the basal cisterns (Ogbole et al.
  2016: 16 % of 2D FLAIR at 0.3 T, fourth ventricle most often; common at 3 T: AJNR 2009;30:911). A
  single-slab 3D FLAIR suppresses most of it (Kallmes et al. 2001; AJNR 2011;32:2054): here 40 % of 3D
  and 80 % of 2D FLAIR scans have it (assumption). Added to the FLAIR signal on the template grid.
- residual_nonuniformity: a few smooth bumps (σ 18–35 mm, ±3–7 %) of intensity non-uniformity, finer than
  what N4 with its default B-spline mesh removes (Boyes et al. 2008 on N3 at 3 T with array coils), in
  every scan, on the scan's own grid.
- field_strength: the subject's 1.5 T or 3 T scanner (contrast.py: relaxation times; noise 1.7 times).
- motion_ringing: a small head shift during the acquisition of the outer k-space lines along the
  phase-encoding axis, which rings along that axis (mild: 0.8–2.5 mm), in 12 % of scans (significant
  motion in 7.5 % of outpatient examinations, J Am Coll Radiol 2015;12:689; mild ringing somewhat more often:
  assumption).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pseudohealthy.phantom import anatomy
from pseudohealthy.phantom.geometry import Grid

P_INFLOW = {"3D": 0.4, "2D": 0.8}
INFLOW_SITES = {"fourth_ventricle": 0.35, "third_ventricle": 0.25, "basal_cisterns": 0.25, "foramina_of_monro": 0.15}
P_RINGING = 0.12
P_1P5T = 0.25  # share of subjects scanned at 1.5 T (assumption; the issue asks for both field strengths)


def csf_inflow(rng: np.random.Generator, two_d: bool, always: bool, gm_signal: float
               ) -> tuple[list[tuple[tuple[slice, ...], np.ndarray]], list[dict]]:
    """Additive FLAIR signal (template grid, as (box, signal) pieces) at 1–2 inflow sites of a 3D FLAIR, 2–3 of
    a 2D one; strength is the peak added signal in units of the cortex's FLAIR signal."""
    mode = "2D" if two_d else "3D"
    present = rng.random() < P_INFLOW[mode]
    n = int(rng.integers(2, 4) if two_d else rng.integers(1, 3))
    names = list(INFLOW_SITES)
    p = np.array([INFLOW_SITES[k] for k in names])
    chosen = rng.choice(len(names), size=n, replace=False, p=p)
    pieces, truth = [], []
    for k in chosen:
        strength = float(rng.uniform(0.8, 1.8) if two_d else rng.uniform(0.6, 1.4))
        region = anatomy.inflow_sites()[names[k]]
        pattern = ndi.gaussian_filter(rng.standard_normal(region.weight.shape).astype(np.float32), 1.5)
        pattern = 1 / (1 + np.exp(-(pattern / max(float(pattern.std()), 1e-6) - 0.3) / 0.3))  # patchy, ~40 % of it
        signal = (strength * gm_signal * pattern * region.weight).astype(np.float32)
        if not (present or always):
            continue
        pieces.append((region.box, signal))
        truth.append({"kind": "csf_inflow", "site": names[k], "center_template_mm": region.center_mm(),
                      "strength": round(strength, 4)})
    return pieces, truth


def _world_axes(grid: Grid) -> list[tuple[int, np.ndarray]]:
    """For each array axis: the world axis it runs along and the world coordinate of each index."""
    out = []
    for k in range(3):
        w = int(np.abs(grid.affine[:3, k]).argmax())
        out.append((w, grid.affine[w, k] * np.arange(grid.shape[k]) + grid.affine[w, 3]))
    return out


def residual_nonuniformity(rng: np.random.Generator, grid: Grid, head_center_world: np.ndarray
                           ) -> tuple[np.ndarray, dict]:
    """Multiplicative field exp(Σ aᵢ gᵢ) of 2–4 Gaussian bumps within the head; float32 on ``grid``."""
    axes = _world_axes(grid)
    log_field = np.zeros(grid.shape, np.float32)
    bumps = []
    for _ in range(int(rng.integers(2, 5))):
        center = np.asarray(head_center_world) + rng.uniform(-50.0, 50.0, 3)
        sigma = float(rng.uniform(18.0, 35.0))
        amplitude = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.07))
        profiles = [np.exp(-0.5 * ((coords - center[w]) / sigma) ** 2).astype(np.float32) for w, coords in axes]
        log_field += amplitude * profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
        bumps.append({"center_world_mm": np.round(center, 1).tolist(), "sigma_mm": round(sigma, 2),
                      "amplitude": round(amplitude, 4)})
    return np.exp(log_field), {"kind": "residual_nonuniformity", "bumps": bumps}


def nonuniformity_at(record: dict, points_world: np.ndarray) -> np.ndarray:
    """The recorded field at (3, N) world points of the scan: what a test or preview compares with."""
    log_field = np.zeros(points_world.shape[1])
    for b in record["bumps"]:
        d2 = ((points_world - np.asarray(b["center_world_mm"])[:, None]) ** 2).sum(axis=0)
        log_field += b["amplitude"] * np.exp(-0.5 * d2 / b["sigma_mm"] ** 2)
    return np.exp(log_field)


def motion_ringing(rng: np.random.Generator, image: np.ndarray, grid: Grid, axcodes: str, always: bool
                   ) -> tuple[np.ndarray, dict | None]:
    """With probability ``P_RINGING`` (or ``always``), the image as if the head had shifted by 0.8–2.5 mm
    along the phase-encoding axis (array axis 1) while the outer k-space lines of one side were acquired."""
    present = rng.random() < P_RINGING
    shift_mm = float(rng.uniform(0.8, 2.5))
    start = float(rng.uniform(0.08, 0.25))  # cycles/voxel where the shifted lines begin
    side = float(rng.choice([-1.0, 1.0]))
    if not (present or always):
        return image, None
    axis = 1
    voxel_mm = float(np.linalg.norm(grid.affine[:3, axis]))
    freq = np.fft.fftfreq(image.shape[axis]).astype(np.float32)
    moved = side * freq > start
    phase = np.where(moved, np.exp(-2j * np.pi * freq * shift_mm / voxel_mm), 1.0).astype(np.complex64)
    spectrum = np.fft.fft(image.astype(np.complex64), axis=axis)
    spectrum *= phase[None, :, None]
    out = np.abs(np.fft.ifft(spectrum, axis=axis)).astype(np.float32)
    energy = float(np.sqrt(np.mean((out - image) ** 2)) / max(float(np.sqrt(np.mean(image**2))), 1e-9))
    return out, {"kind": "motion_ringing", "phase_axis": axis, "phase_direction": axcodes[axis],
                 "shift_mm": round(shift_mm, 3), "k_space_from": round(start, 3), "k_space_side": int(side),
                 "corrupted_fraction": round(float(moved.mean()), 3), "relative_rms": round(energy, 4)}
