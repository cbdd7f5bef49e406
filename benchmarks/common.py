"""Shared by the benchmarks: machine/commit provenance, child-process peak memory, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pseudohealthy.provenance import machine, source_commit

RESULTS = Path(__file__).resolve().parent / "results"


def provenance(cfg=None) -> dict:
    return {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": source_commit(), "machine": machine(),
            "config": cfg.model_dump(mode="json") if cfg is not None else None}


def peak_rss_mb(command: list[str]) -> tuple[float, float, int]:
    """Run ``command``; return (peak resident memory of that process in MB, seconds, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode()[-2000:])
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode


def result_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def earlier_result(name: str) -> dict:
    """What an earlier (possibly interrupted) run wrote as ``name``; empty when there is none."""
    path = result_path(name)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_result(name: str, result: dict) -> Path:
    """Write ``result`` as ``benchmarks/results/<name>.json``, atomically (partial results survive a kill)."""
    path = result_path(name)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path
