"""``--device auto|cpu|cuda[:N]``: what the user asked for, checked against this machine."""

from __future__ import annotations

import re

import torch

from pseudohealthy.errors import UserError

DEVICE_HELP = "auto (a CUDA GPU when there is one, else the CPU), cpu, or cuda[:N]."


def resolve_device(name: str) -> str:
    """The torch device string for ``name``; one clear line when it cannot be used here."""
    name = name.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise UserError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available on this machine; use --device cpu (or auto)")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name
