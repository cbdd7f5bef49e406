"""MR contrasts from tissue properties: a magnitude inversion-recovery signal equation.

Both sequences use S = PD · |1 − 2·exp(−TI/T1) + exp(−TR/T1)| · exp(−TE/T2), which gives
T1w (MPRAGE-like: WM > GM > CSF) and FLAIR (CSF nulled, GM > WM, lesions bright).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequence:
    name: str
    tr_ms: float
    ti_ms: float
    te_ms: float


T1W = Sequence("T1w", tr_ms=2300.0, ti_ms=1100.0, te_ms=3.0)
FLAIR = Sequence("FLAIR", tr_ms=9000.0, ti_ms=2500.0, te_ms=90.0)


@dataclass(frozen=True)
class Tissue:
    t1_ms: float
    t2_ms: float
    pd: float


# Approximate 3 T values. "fcd": dysplastic tissue (gliosis, myelin loss, more water): longer T1 and
# T2 and higher PD, so that at full strength it is brighter than cortex on FLAIR, as FCD often is.
# "cap": periventricular caps (a normal variant): mildly long T2.
TISSUES: dict[str, Tissue] = {
    "gm": Tissue(1330.0, 110.0, 0.80),
    "wm": Tissue(830.0, 80.0, 0.69),
    "csf": Tissue(4000.0, 2000.0, 1.00),
    "fcd": Tissue(1900.0, 250.0, 0.90),
    "cap": Tissue(1350.0, 140.0, 0.82),
    "bone": Tissue(500.0, 30.0, 0.05),
    "fat": Tissue(380.0, 100.0, 0.90),
}


def signal(tissue: Tissue, seq: Sequence) -> float:
    """Magnitude inversion-recovery signal of one tissue for one sequence (arbitrary units)."""
    recovery = 1.0 - 2.0 * np.exp(-seq.ti_ms / tissue.t1_ms) + np.exp(-seq.tr_ms / tissue.t1_ms)
    return float(tissue.pd * abs(recovery) * np.exp(-seq.te_ms / tissue.t2_ms))


def jittered_tissues(rng: np.random.Generator, spread: float = 0.04) -> dict[str, Tissue]:
    """Per-subject tissue properties: each T1/T2/PD scaled by a factor within ±``spread``."""
    out = {}
    for name, t in TISSUES.items():
        f = 1.0 + rng.uniform(-spread, spread, size=3)
        out[name] = Tissue(t.t1_ms * f[0], t.t2_ms * f[1], t.pd * f[2])
    return out


# FCD is only mildly T1-hypointense; the signal equation with the FLAIR-bright tissue's long T1 would
# make it −55 % of WM on T1w, far more conspicuous than real lesions (and a give-away for a
# T1-conditioned model). On T1w the dysplastic tissue is therefore WM signal reduced by this fraction.
FCD_T1W_HYPOINTENSITY = 0.15


def tissue_signals(tissues: dict[str, Tissue], seq: Sequence) -> dict[str, float]:
    out = {name: signal(t, seq) for name, t in tissues.items()}
    if seq.name == T1W.name:
        for name in ("fcd", "dysplasia"):
            if name in out:
                out[name] = (1 - FCD_T1W_HYPOINTENSITY) * out["wm"]
    return out


# Tissues of the realistic phantom, each a base tissue with its T1, T2 and PD scaled (so that they follow
# the subject's jittered base tissues and the field strength). "cortex_long_t2": limbic and insular
# cortex, whose T2 is longer than other cortex (Georgiades et al. 2001); "wm_long_t2": corticospinal
# tract; "wmh": punctate white-matter hyperintensity; "dysplasia": the FLAIR-bright tissue of the realistic
# FCD, whose amount is calibrated per lesion to an intended contrast (phantom/fcd_range.py).
DERIVED_TISSUES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "cortex_long_t2": ("gm", (1.0, 1.25, 1.02)),
    "wm_long_t2": ("wm", (1.0, 1.30, 1.03)),
    "wmh": ("wm", (1.65, 2.2, 1.2)),
    "dysplasia": ("fcd", (0.79, 0.8, 1.0)),
}

# 1.5 T relative to 3 T. T1: white and grey matter ratios measured with MPRAGE in MAGMA 2008;21:121 (
# WM 646 vs 838 ms, GM 1197 vs 1607 ms); CSF T1 hardly depends on the field. Caps, the legacy FCD tissue and
# the dysplasia have a T1 at 3 T near or above grey matter's (1350–1900 ms), so they take its ratio; bone and
# fat T1 shorter at 1.5 T and T2 5 % longer: assumptions. Noise: SNR grows about linearly with B0; with the
# protocol changes made at 1.5 T (bigger voxels are not simulated) the noise is taken 1.7 times higher
# (assumption). Every tissue is listed, so that a new one needs a decision here.
_GREY_AT_1P5T, _WHITE_AT_1P5T = 0.745, 0.77  # 1197 / 1607, 646 / 838
_T1_AT_1P5T = {
    "gm": _GREY_AT_1P5T, "cortex_long_t2": _GREY_AT_1P5T, "cap": _GREY_AT_1P5T, "fcd": _GREY_AT_1P5T,
    "dysplasia": _GREY_AT_1P5T, "wm": _WHITE_AT_1P5T, "wm_long_t2": _WHITE_AT_1P5T, "wmh": _WHITE_AT_1P5T,
    "csf": 1.0, "bone": 0.9, "fat": 0.7,
}
_T2_AT_1P5T = 1.05
NOISE_AT_1P5T = 1.7


def realistic_tissues(base: dict[str, Tissue], field_t: float = 3.0) -> dict[str, Tissue]:
    """The base tissues (3 T values, jittered per subject) plus the derived ones, at ``field_t`` (1.5 or 3)."""
    out = dict(base)
    for name, (source, (f1, f2, fpd)) in DERIVED_TISSUES.items():
        t = base[source]
        out[name] = Tissue(t.t1_ms * f1, t.t2_ms * f2, t.pd * fpd)
    if field_t == 3.0:
        return out
    if field_t != 1.5:
        raise ValueError(f"field strength {field_t} T: only 1.5 and 3 are modelled")
    return {name: Tissue(t.t1_ms * _T1_AT_1P5T[name],
                         t.t2_ms * (1.0 if name == "csf" else _T2_AT_1P5T), t.pd) for name, t in out.items()}
