"""The 9 slice classes of METHOD.md §1: 0 = normal, otherwise the lesion's lobe string."""

from __future__ import annotations

# Class ids as in the paper's code: FL=1, "TL,OL"=2, "FL,PL"=3, TL=4, IL=5, PL=6, "TL,PL"=7, OL=8.
CLASS_NAMES: dict[int, str] = {0: "normal", 1: "FL", 2: "TL,OL", 3: "FL,PL", 4: "TL", 5: "IL", 6: "PL",
                               7: "TL,PL", 8: "OL"}
NUM_CLASSES = len(CLASS_NAMES)
LOBE_CLASSES: dict[frozenset[str], int] = {frozenset(name.split(",")): c for c, name in CLASS_NAMES.items() if c}


class UnknownLobeError(ValueError):
    pass


def lobe_class(lobe: str) -> int:
    """Map a participants.tsv lobe string (e.g. "TL,OL", "ol, tl") to its class id (1–8).

    Raises :class:`UnknownLobeError` for strings that are not one of the 8 known lobe sets.
    """
    parts = frozenset(p.strip().upper() for p in lobe.replace(";", ",").split(",") if p.strip())
    if parts not in LOBE_CLASSES:
        known = ", ".join(f'"{CLASS_NAMES[c]}"' for c in range(1, NUM_CLASSES))
        raise UnknownLobeError(f"unknown lobe '{lobe}' (known: {known})")
    return LOBE_CLASSES[parts]
