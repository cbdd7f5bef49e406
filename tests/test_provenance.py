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


def test_cpu_name_is_the_model_name_of_proc_cpuinfo():
    from pseudohealthy.provenance import cpu_name, machine

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.lower().startswith("model name")]
        if names:
            assert cpu_name() == names[0]
    assert machine()["processor"] == cpu_name() and machine()["cpus"] >= 1


def _result(name, commits, machines=None, finished=None, seconds=None):
    provenance = {"commit": commits[-1], "code_sha256": "ab" * 32, "computed_by": commits}
    if machines is not None:
        provenance.update(machines=machines, finished=finished, seconds=seconds)
    return {"name": name, "provenance": provenance}


def test_provenance_note_names_commits_machines_and_recorded_time():
    from pseudohealthy.evaluation.report import provenance_note

    results = [_result("full", ["1111111aaaa", "2222222bbbb"], ["CPU X"], "2026-11-30T20:00:00+0000",
                       {"sweep": 1800.0, "seeds": 5400.0}),
               _result("wolleb", ["2222222bbbb"], ["CPU Y"], "2026-12-01T09:30:00+0000", {"sweep": 1800.0, "seeds": None}),
               _result("control_zscore", ["0000000cccc"])]  # stored before machines and times were kept
    note = provenance_note(results, "3333333dddd")
    assert "commits 0000000, 1111111, 2222222" in note and "abababababab" in note
    assert "on CPU X, CPU Y" in note and "last test run finished 2026-12-01T09:30:00+0000" in note
    assert "sweeps 1.0 h, test runs 1.5 h" in note and "not recorded for wolleb, control_zscore" in note
    assert note.endswith("Table written by commit 3333333.\n")
    assert "machine not recorded" in provenance_note(results[2:], "3333333dddd")
    assert provenance_note([], "3333333dddd") == ""
