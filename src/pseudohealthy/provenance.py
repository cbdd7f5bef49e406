"""Which code and which machine made a result: the git commit of the source tree, a digest of the
package's sources, and the processor, core count and torch threads it ran on."""

from __future__ import annotations

import hashlib
import os
import platform
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


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux; ``platform`` elsewhere, which may only say
    the architecture)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where a timed or stochastic result was computed: processor, cores, torch threads and GPU."""
    import torch

    return {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
