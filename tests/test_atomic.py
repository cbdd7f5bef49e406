import os
import stat

import pytest

from pseudohealthy.io.atomic import write_text_atomic, write_with_atomic


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "a.txt"
    write_text_atomic(path, "one\n")
    write_text_atomic(path, "two\n", newline="\r\n")
    assert path.read_bytes() == b"two\r\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "b.txt"
    write_text_atomic(path, "original")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_with_atomic(path, broken)
    assert path.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]


def test_atomic_directory_replaces_whole_folder_or_nothing(tmp_path):
    from pseudohealthy.io.atomic import atomic_directory

    final = tmp_path / "data"
    with atomic_directory(final) as staging:
        (staging / "a.txt").write_text("1")
    assert (final / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as staging:
            (staging / "b.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]
    with atomic_directory(final) as staging:
        (staging / "c.txt").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
