"""Publishing a version is all-or-nothing, and version numbers come from what is on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelrepo import ModelRepositoryError, existing_versions, next_version, publish_version


def _writer(payload: bytes = b"graph") -> Any:
    def write_files(folder: Path, version: int) -> dict[str, Any]:
        (folder / "model.onnx").write_bytes(payload)
        return {"version": str(version)}

    return write_files


def test_next_version_ignores_hidden_and_non_numeric_folders(tmp_path: Path) -> None:
    for name in ("1", "3", ".4.abc.partial", "latest", "0"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a version")
    assert existing_versions(tmp_path) == [1, 3]
    assert next_version(tmp_path) == 4
    assert next_version(tmp_path / "absent") == 1


def test_failed_write_leaves_no_version_and_no_partial_folder(tmp_path: Path) -> None:
    def failing(folder: Path, version: int) -> dict[str, Any]:
        (folder / "model.onnx").write_bytes(b"half a graph")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        publish_version(tmp_path, "m", None, failing)
    assert list((tmp_path / "m").iterdir()) == []


def test_published_version_holds_both_files(tmp_path: Path) -> None:
    folder = publish_version(tmp_path, "m", None, _writer())
    assert folder == tmp_path / "m" / "1"
    assert sorted(path.name for path in folder.iterdir()) == ["model.json", "model.onnx"]
    assert (folder.stat().st_mode & 0o777) == 0o755


def test_versions_count_up_from_what_is_on_disk(tmp_path: Path) -> None:
    assert publish_version(tmp_path, "m", None, _writer()).name == "1"
    assert publish_version(tmp_path, "m", None, _writer()).name == "2"
    assert publish_version(tmp_path, "m", 7, _writer()).name == "7"
    assert publish_version(tmp_path, "m", None, _writer()).name == "8"


def test_existing_version_is_refused_and_kept(tmp_path: Path) -> None:
    folder = publish_version(tmp_path, "m", None, _writer(b"first"))
    with pytest.raises(ModelRepositoryError, match="already exists"):
        publish_version(tmp_path, "m", 1, _writer(b"second"))
    assert (folder / "model.onnx").read_bytes() == b"first"
    assert sorted(path.name for path in (tmp_path / "m").iterdir()) == ["1"]


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "-dash"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelRepositoryError, match="model name"):
        publish_version(tmp_path, name, None, _writer())


def test_version_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRepositoryError, match="positive"):
        publish_version(tmp_path, "m", 0, _writer())
