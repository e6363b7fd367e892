"""Fixtures for the service tests: real model repositories, runtimes and server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.options import runtime_options
from service.runtime import ModelRuntime, load_runtime
from service.settings import ServiceSettings
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess


@pytest.fixture
def model_repo(tmp_path: Path) -> Path:
    """A fresh repository with one valid version, cvae-mnist/1."""
    root = tmp_path / "models"
    write_version(root, "1")
    return root


@pytest.fixture(scope="session")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid version for tests that only read it."""
    root = tmp_path_factory.mktemp("shared") / "models"
    write_version(root, "1")
    return root


@pytest.fixture(scope="session")
def runtime(shared_repo: Path) -> ModelRuntime:
    return load_runtime(
        shared_repo / "cvae-mnist" / "1", runtime_options(ServiceSettings(intra_op_threads=1))
    )


@pytest.fixture(scope="module")
def server(shared_repo: Path) -> Iterator[ServerProcess]:
    """One running server for the tests that do not stop or reload it."""
    with ServerProcess(shared_repo, "--max-delay-ms", "5", "--queue-size", "2048") as running:
        yield running
