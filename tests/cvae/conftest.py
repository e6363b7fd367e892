"""Fixtures: a real model repository and a real `cvae serve` process shared by the cvae tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cvae.server import running_server


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.service.modelrepo import write_version  # the service's real tiny ONNX decoder

    root = tmp_path_factory.mktemp("models")
    write_version(root, "1")
    return root


@pytest.fixture(scope="session")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with running_server(model_repository, log) as target:
        yield target
