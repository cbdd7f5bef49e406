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


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path
