"""Input validation with the BIDS validator (``bids-validator-deno``), as BIDS Apps do before running.

Errors are summarised in one block (code, how many files, an example path, the validator's hint);
warnings are counted, not shown. ``--skip-bids-validation`` skips the check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from pseudohealthy.errors import UserError


def _validator() -> str | None:
    found = shutil.which("bids-validator-deno")
    beside = Path(sys.executable).with_name("bids-validator-deno")  # inside this environment's bin/
    return found or (str(beside) if beside.is_file() else None)


def validate_bids(bids_dir: Path, timeout: float = 600) -> int:
    """Validate ``bids_dir``; returns the number of warnings, raises ``UserError`` listing the errors."""
    bids_dir = Path(bids_dir)
    exe = _validator()
    if exe is None:
        raise UserError("bids-validator-deno is not installed (pip install bids-validator-deno); install it or pass "
                        "--skip-bids-validation")
    try:
        done = subprocess.run([exe, str(bids_dir), "--format", "json"], capture_output=True, text=True,
                              timeout=timeout)
        issues = json.loads(done.stdout)["issues"]["issues"]
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"{bids_dir}: the BIDS validator did not finish in {timeout:.0f} s; pass "
                        "--skip-bids-validation to go on without it") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{bids_dir}: the BIDS validator failed ({tail[0][:200]}); pass --skip-bids-validation to go "
                        "on without it") from exc
    errors = defaultdict(list)
    for issue in issues:
        if issue.get("severity") == "error":
            errors[issue.get("code", "UNKNOWN")].append(issue)
    if errors:
        lines = [f"{bids_dir} is not valid BIDS: the validator found {sum(map(len, errors.values()))} error(s):"]
        for code, found in sorted(errors.items()):
            example = found[0]
            hint = f" ({example['issueMessage'].strip().splitlines()[0][:160]})" if example.get("issueMessage") else ""
            lines.append(f"  {code}: {len(found)} file(s), e.g. {example.get('location', '?')}{hint}")
        lines.append("Fix these (files that BIDS does not name can be listed in BIDS_DIR/.bidsignore), or pass "
                     "--skip-bids-validation to go on anyway.")
        raise UserError("\n".join(lines))
    return sum(1 for issue in issues if issue.get("severity") == "warning")
