"""Which phantom to render: the legacy images, or the realistic generator with a chosen set of confounds.

A confound is a way in which a healthy brain or a scanner makes FLAIR look abnormal (docs/phantom.md
lists each with its source and frequency). Each can be switched off (``without``) or forced into every
subject or scan (``always``, for previews and tests). Every confound draws from a random stream of its
own (:func:`stream`), so switching one changes nothing else: not the plan, the lesion, the head pose,
the noise, nor any other confound.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from pseudohealthy.errors import UserError

# Name -> what it adds. "fcd_range" is the lesion model (IIa faint, IIb brighter, strata in every test split).
CONFOUNDS: dict[str, str] = {
    "regional_cortex": "FLAIR-brighter insular, cingulate and mesial temporal cortex",
    "corticospinal_tract": "mildly FLAIR-bright corticospinal tracts",
    "periventricular": "caps at the frontal and occipital horns, thin bands lining the ventricles",
    "punctate_wmh": "small punctate white-matter hyperintensities, more with age",
    "cortical_partial_volume": "patches where the cortex–CSF border is blurred by partial volume",
    "csf_inflow": "CSF inflow and pulsation hyperintensity in ventricles and cisterns (FLAIR)",
    "residual_nonuniformity": "intensity non-uniformity at scales N4 does not remove",
    "field_strength": "1.5 T or 3 T: relaxation times, tissue contrast and SNR",
    "motion_ringing": "mild motion ringing along the phase-encoding axis in a minority of scans",
    "fcd_range": "FCD IIa with small FLAIR change, IIb brighter; size and contrast strata in every test split",
}
MODES = ("realistic", "legacy")


@dataclass(frozen=True)
class Realism:
    """``mode`` "legacy" gives the images of the generator before confounds, exactly; "realistic" adds
    every confound but those in ``without``, and forces those in ``always`` into every subject or scan."""

    mode: str = "realistic"
    without: tuple[str, ...] = ()
    always: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"phantom: --realism {self.mode!r} is not one of {', '.join(MODES)}")
        for name in (*self.without, *self.always):
            if name not in CONFOUNDS:
                raise UserError(f"phantom: unknown confound {name!r}; choose from {', '.join(CONFOUNDS)}")
        if set(self.without) & set(self.always):
            raise UserError("phantom: a confound cannot be both --without and --always")
        if self.mode == "legacy" and (self.without or self.always):
            raise UserError("phantom: --without and --always apply to --realism realistic only")

    @property
    def confounds(self) -> tuple[str, ...]:
        """The confounds rendered, in ``CONFOUNDS`` order (none in legacy mode)."""
        return () if self.mode == "legacy" else tuple(c for c in CONFOUNDS if c not in self.without)

    def record(self) -> dict:
        return {"mode": self.mode, "confounds": list(self.confounds), "always": sorted(self.always)}


LEGACY = Realism("legacy")


def only(names: tuple[str, ...], always: tuple[str, ...] = ()) -> Realism:
    """The realistic phantom with just the confounds ``names`` (and its lesion model, fcd_range), forcing
    ``always``: what tests and the docs' figures compare a confound against."""
    return Realism(without=tuple(c for c in CONFOUNDS if c not in (*names, "fcd_range")), always=always)


def stream(seed: int, index: int, name: str, *more: int) -> np.random.Generator:
    """The random stream of one confound (``name``) of one subject (``index``; -1 for the dataset);
    ``more`` separates sessions and scans. Keyed by a checksum of the name, so adding a confound never
    shifts another's draws."""
    return np.random.default_rng([seed, index + 1, zlib.crc32(name.encode()), *more])
