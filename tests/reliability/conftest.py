"""Fixtures for the reliability tests: a real model repository and a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid version (cvae-mnist/1) of the tests' tiny real ONNX decoder."""
    root = tmp_path_factory.mktemp("reliability") / "models"
    write_version(root, "1")
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    """A running `cvae serve` with the default limits, shared by a module's tests."""
    with ServerProcess(repository) as running:
        yield running
