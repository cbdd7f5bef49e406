"""Atomic writes: write to a temporary sibling, then rename into place.

A crash mid-write leaves at most a ``.tmp-*`` file, never a truncated file under its final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask (reading it requires setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(final: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    ``suffix`` keeps extensions that writers inspect (e.g. ``.nii.gz`` for nibabel).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{final.name}-", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> None:
    """Write text atomically; ``newline`` is what each ``\\n`` becomes on disk."""
    write_bytes_atomic(path, text.replace("\n", newline).encode(encoding))


def write_json_atomic(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_with_atomic(path: Path, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` only if it returns."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``final``; on success it replaces ``final`` as a whole.

    On failure the staging folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        yield staging
        if final.exists():
            trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
            os.replace(final, trash)
            os.replace(staging, final)
            shutil.rmtree(trash)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
