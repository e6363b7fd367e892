"""Publish a version: models/<name>/<version>/ appears whole or not at all.

A version is assembled in a hidden sibling folder and renamed into place in one step, so a
server watching the repository sees either nothing or the whole version; an existing version
is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelrepo.errors import ModelRepositoryError
from modelrepo.folders import check_name, next_version
from modelrepo.spec import DESCRIPTION_FILE

_LOGGER = logging.getLogger(__name__)


def publish_version(
    repository: Path,
    name: str,
    version: int | None,
    write_files: Callable[[Path, int], dict[str, Any]],
) -> Path:
    """Create `repository`/<name>/<version>/ atomically (version None: the next number).

    `write_files(folder, version)` writes the graph files into the (temporary) folder and
    returns the model.json document (see spec.model_document), saved as model.json.
    Returns the published folder.
    """
    model_dir = repository / check_name(name)
    if version is None:
        version = next_version(model_dir)
    if version < 1:
        raise ModelRepositoryError(f"version must be a positive integer, got {version}")
    final = model_dir / str(version)
    if final.exists():
        raise ModelRepositoryError(f"{final} already exists; export never overwrites a version")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=model_dir))
    try:
        document = write_files(staging, version)
        text = json.dumps(document, indent=2, sort_keys=False) + "\n"
        (staging / DESCRIPTION_FILE).write_text(text, encoding="utf-8")
        for path in staging.iterdir():
            _fsync(path)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; readers need to list it
        if final.exists():  # a concurrent export took the number while we wrote
            raise ModelRepositoryError(f"{final} appeared while exporting; not overwriting it")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync(model_dir)
    _LOGGER.info("published %s", final)
    return final


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
