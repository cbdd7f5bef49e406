"""Checkpoints as plain tensors and numbers, so ``torch.load(weights_only=True)`` can read them."""

from __future__ import annotations

from pathlib import Path

import torch

from pseudohealthy.errors import UserError
from pseudohealthy.io.atomic import write_with_atomic

FORMAT = "pseudohealthy-checkpoint-1"


def save_checkpoint(path: Path, **payload) -> None:
    payload = {"format": FORMAT, **payload}
    write_with_atomic(Path(path), lambda tmp: torch.save(payload, tmp), suffix=".pt")


def load_checkpoint(path: Path, expect_kind: str | None = None, expect_preset: dict | None = None) -> dict:
    """Load safely (no pickled code); check it is ours, of the right kind and made with the same network config."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; train first (pseudohealthy train …)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}); it is damaged or not "
                        "made by pseudohealthy: retrain or restore it") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a pseudohealthy checkpoint; retrain or restore it")
    if expect_kind and ckpt.get("kind") != expect_kind:
        raise UserError(f"{path}: holds a {ckpt.get('kind')} model, not a {expect_kind}")
    if expect_preset is not None and ckpt.get("network") != expect_preset:
        raise UserError(f"{path}: made with another network configuration (preset '{ckpt.get('preset')}'); "
                        "use the same preset or retrain")
    return ckpt
