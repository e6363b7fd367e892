"""The serving image built and run under podman: only with `--image` (`make image-test`, which
.ci/run runs after `make test`); it builds an image, which takes minutes."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--image", action="store_true", default=False, help="run tests/image")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption("image", default=False):
        return None
    return collection_path.name.startswith("test_")  # not part of `make test`: `make image-test`
