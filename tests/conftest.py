"""Suite-wide options. `tests/soak` is a report generator like `make bench`, not part of
`make test`: it is collected only with `--soak` (`make soak`), never listed as skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

_SOAK = Path(__file__).resolve().parent / "soak"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="run tests/soak")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.resolve() == _SOAK and not config.getoption("soak"):
        return True
    return None
