"""Outputs appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvae.jobs.atomic import atomic_dir, atomic_file, remove_stale_temporaries


def test_atomic_file_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_file(target) as stream:
        stream.write(b"half")
        raise RuntimeError("disk full, say")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as stream:
        stream.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(OSError), atomic_dir(target) as folder:
        (folder / "a.png").write_bytes(b"x")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as folder:
        (folder / "a.png").write_bytes(b"x")
    assert (target / "a.png").read_bytes() == b"x"


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".chunk-000001.npy.tmp-123").write_bytes(b"partial")
    (tmp_path / ".out.tmp-9").mkdir()
    (tmp_path / "chunk-000000.npy").write_bytes(b"whole")
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["chunk-000000.npy"]
