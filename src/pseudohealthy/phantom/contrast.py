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
        out["fcd"] = (1 - FCD_T1W_HYPOINTENSITY) * out["wm"]
    return out
