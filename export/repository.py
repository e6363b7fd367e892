"""The versioned model repository on disk: models/<name>/<version>/{model.onnx, model.json}.

A version is assembled in a hidden sibling folder and renamed into place in one step, so a
server watching the repository sees either nothing or the whole version; an existing version
is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
DESCRIPTION_FILE = "model.json"
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RepositoryError(ValueError):
    """A bad name or version, or a version that already exists."""


def check_name(name: str) -> str:
    if not _NAME_PATTERN.fullmatch(name):
        raise RepositoryError(
            f"model name {name!r}: use letters, digits, '.', '_' or '-', not starting with a symbol"
        )
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """Integer version folders under models/<name>/, ascending (hidden or other folders ignored)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in model_dir.iterdir()
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0
    )


def next_version(model_dir: Path) -> int:
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def publish_version(
    repository: Path,
    name: str,
    version: int | None,
    write_files: Callable[[Path, int], dict[str, Any]],
) -> Path:
    """Create models/<name>/<version>/ atomically.

    `write_files(folder, version)` writes model.onnx into the (temporary) folder and returns
    the description, which is saved as model.json. Returns the published folder.
    """
    model_dir = repository / check_name(name)
    if version is None:
        version = next_version(model_dir)
    if version < 1:
        raise RepositoryError(f"version must be a positive integer, got {version}")
    final = model_dir / str(version)
    if final.exists():
        raise RepositoryError(f"{final} already exists; export never overwrites a version")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=model_dir))
    try:
        description = write_files(staging, version)
        _write_json(staging / DESCRIPTION_FILE, description)
        for path in staging.iterdir():
            _fsync(path)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; readers need to list it
        if final.exists():  # a concurrent export took the number while we wrote
            raise RepositoryError(f"{final} appeared while exporting; not overwriting it")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync(model_dir)
    _LOGGER.info("published %s", final)
    return final


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
