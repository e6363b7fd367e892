"""Start-up on a missing or corrupt model repository: exit 1 with ONE line naming file and problem.

tests/service/test_lifecycle.py covers a missing folder, a sha256 mismatch, bad JSON, a truncated
ONNX and wrong input names; these are the other ways a repository can be broken.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.service.modelrepo import write_version
from tests.service.serverproc import run_serve

pytestmark = pytest.mark.timeout(180)


def _broken(breakage: str) -> Callable[[Path], Path]:
    return lambda root: write_version(root, "1", breakage=breakage)


def _empty_onnx(root: Path) -> Path:
    folder = write_version(root, "1")
    (folder / "model.onnx").write_bytes(b"")
    return folder


def _json_is_a_folder(root: Path) -> Path:
    folder = write_version(root, "1")
    (folder / "model.json").unlink()
    (folder / "model.json").mkdir()
    return folder


def _no_version(root: Path) -> Path:
    (root / "cvae-mnist").mkdir(parents=True)
    return root / "cvae-mnist"


def _no_model(root: Path) -> Path:
    root.mkdir()
    return root


@pytest.mark.parametrize(
    ("make", "named", "problem"),
    [
        (_broken("missing_onnx"), "model.onnx", "file is missing"),
        (_broken("missing_key"), "model.json", "missing key 'latent_dim'"),
        (_broken("wrong_output_shape"), "model.onnx", "model.json says float32[1, 28, 28]"),
        (_empty_onnx, "model.onnx", "does not match onnx_sha256"),
        (_json_is_a_folder, "model.json", "not a regular file (a folder)"),
        (_no_version, "", "no version folder"),
        (_no_model, "", "holds no model folder"),
    ],
    ids=["missing-onnx", "missing-key", "wrong-output-shape", "empty-onnx", "json-is-a-folder",
         "no-version", "no-model"],
)  # fmt: skip
def test_a_broken_repository_exits_1_with_one_line_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], named: str, problem: str
) -> None:
    root = tmp_path / "models"
    where = make(root) / named if named else make(root)
    result = run_serve(root)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {str(where).rstrip('/')}: "), lines[0]
    assert problem in lines[0]
    assert "Traceback" not in result.stderr
