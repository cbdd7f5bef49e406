"""Helpers shared by tests."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def copy_dataset(bids: Path, dest: Path) -> Path:
    """A writable copy of a dataset for tests that damage it."""
    shutil.copytree(bids, dest)
    return dest


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (relative path -> hex digest)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}
