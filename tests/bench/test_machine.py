"""bench/machine.py: results name paths inside the repository relative to it."""

from __future__ import annotations

from pathlib import Path

from bench.machine import repository_path

_ROOT = Path(__file__).resolve().parents[2]


def test_a_path_inside_the_repository_is_written_relative_to_it() -> None:
    assert repository_path(_ROOT / "runs" / "default" / "best.pt") == "runs/default/best.pt"
    assert repository_path(_ROOT / "models" / ".." / "docs") == "docs"


def test_a_path_outside_the_repository_is_kept(tmp_path: Path) -> None:
    assert repository_path(tmp_path / "x.onnx") == str(tmp_path / "x.onnx")
