"""``detect --nprocs 2`` writes what a serial run writes; ``--work-dir`` moves only the intermediates."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from pseudohealthy.detect.run import detect


def _outputs(out, pids):
    found = {}
    for pid in pids:
        for path in sorted((out / pid / "anat").iterdir()):
            if path.name.endswith(".nii.gz"):
                found[path.name] = np.asarray(nib.load(path).dataobj)
            elif path.suffix == ".tsv":
                found[path.name] = path.read_text()
    return found


def test_parallel_subjects_equal_serial_and_work_dir_holds_the_intermediates(trained, tiny_bids, tiny_phantom,
                                                                            tmp_path):
    pids = [s["participant_id"] for s in tiny_phantom["subjects"]][:2]
    serial = detect(tiny_bids, tmp_path / "serial", trained, pids)
    parallel = detect(tiny_bids, tmp_path / "parallel", trained, pids, nprocs=2, work_root=tmp_path / "scratch")
    assert sorted(r["participant_id"] for r in parallel) == sorted(pids) == sorted(r["participant_id"] for r in serial)
    a, b = _outputs(tmp_path / "serial", pids), _outputs(tmp_path / "parallel", pids)
    assert a.keys() == b.keys() and len(a) >= 2 * 6
    for name in a:
        if isinstance(a[name], str):
            assert a[name] == b[name], name
        else:
            np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    for pid in pids:  # preprocessing went to --work-dir; OUT_DIR keeps only the finished marker
        assert (tmp_path / "scratch" / pid / "meta.json").is_file()
        assert [p.name for p in (tmp_path / "parallel" / "sourcedata" / "work" / pid).iterdir()] == ["detect_done.json"]
    assert detect(tiny_bids, tmp_path / "parallel", trained, pids, nprocs=2) == []  # finished: skipped
