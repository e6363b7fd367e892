"""Fixtures: a real model repository and a real `cvae serve` process shared by the cvae tests.

Both come from the service's test helpers (tests/service/modelrepo.py, serverproc.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid version of the service's tiny real ONNX decoder."""
    root = tmp_path_factory.mktemp("client") / "models"
    write_version(root, "1")
    return root


@pytest.fixture(scope="session")
def server(model_repository: Path) -> Iterator[str]:
    """A running `cvae serve`; yields its "127.0.0.1:port" target."""
    with ServerProcess(model_repository) as running:
        yield running.address


@pytest.fixture(scope="session")
def encoder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running `cvae serve` with version 1 (no encoder) and version 2 (with one)."""
    root = tmp_path_factory.mktemp("images") / "models"
    write_version(root, "1")
    write_version(root, "2", encoder=True)
    with ServerProcess(root, metrics=False) as running:
        yield running.address
