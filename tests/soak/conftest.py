"""The soak: long reliability runs, only with `--soak` (`make soak`). Each test stores what it
measured and its checks in `soak_results`; at the end of the session they are written to
docs/reliability.json and rendered into docs/reliability.md by tests/soak/report.py, whether the
checks passed or not."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.soak import report

_HERE = Path(__file__).resolve().parent


def environment() -> dict[str, Any]:
    return {
        "started_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "nice": os.nice(0),
        "python": platform.python_version(),
        "grpcio": metadata.version("grpcio"),
        "onnxruntime": metadata.version("onnxruntime"),
        "hypothesis": metadata.version("hypothesis"),
    }


@pytest.fixture(scope="session")
def soak_results() -> Iterator[dict[str, Any]]:
    results: dict[str, Any] = {"environment": environment()}
    yield results
    results["environment"]["load_average_at_end"] = list(os.getloadavg())
    report.save(results)


def record_checks(section: dict[str, Any], checks: dict[str, tuple[bool, str]]) -> None:
    """Store the checks (name -> (passed, what was measured)) and fail on any that did not pass."""
    section["checks"] = {
        name: {"passed": ok, "measured": what} for name, (ok, what) in checks.items()
    }
    failed = {name: what for name, (ok, what) in checks.items() if not ok}
    assert not failed, failed
