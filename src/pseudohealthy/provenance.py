"""Which code made a result: the git commit of the source tree and a digest of the package's sources."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def source_commit() -> str:
    """The git commit of the package's source tree, or ``unknown`` outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def package_digest(skip: tuple[str, ...] = ()) -> str:
    """SHA-256 over the package's Python sources: a stored result is reused only with the same code.
    ``skip``: source paths (relative to the package, ``/``-separated prefixes) left out of the digest."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix().startswith(skip):
            continue
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
