"""Which code made a result: the package digest that keys the benchmark's stored results."""

import hashlib
from pathlib import Path

import pseudohealthy
from pseudohealthy.evaluation.benchmark import PRESENTATION_CODE
from pseudohealthy.provenance import package_digest


def _by_hand(skip: tuple[str, ...]) -> str:
    root = Path(pseudohealthy.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(rel.startswith(prefix) for prefix in skip):
            continue
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_digest_leaves_out_exactly_the_skipped_sources():
    assert package_digest() == _by_hand(())
    assert package_digest(skip=PRESENTATION_CODE) == _by_hand(PRESENTATION_CODE)
    assert package_digest(skip=PRESENTATION_CODE) != package_digest()


def test_presentation_code_names_existing_sources():
    root = Path(pseudohealthy.__file__).resolve().parent
    for prefix in PRESENTATION_CODE:  # a renamed module must not silently fall back into the digest
        assert any(p.relative_to(root).as_posix().startswith(prefix) for p in root.rglob("*.py")), prefix
