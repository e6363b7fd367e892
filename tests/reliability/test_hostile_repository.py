"""A hostile model repository (issue 14): no single file stops hot reload, hangs the server or
poisons what it serves. Real `cvae serve` processes on real files (tests/service/hostile.py).

- start-up with only a hostile version: exit 1 with one line naming the file and the problem;
- start-up with hostile versions newer than a good one: the good one serves, each newer one is
  refused on its own, logged and counted (a new replica does not crash-loop);
- hot reload beside every hostile version at once: the watcher lives on, a later good version
  loads, and SIGTERM still drains and exits 0.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cvae.v1 import generator_pb2 as pb
from tests.service.hostile import HOSTILE, PROBLEMS
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess, run_serve

pytestmark = pytest.mark.timeout(300)
_MODEL = "cvae-mnist"
_FOLDERS = ("superscript-two-folder", "arabic-three-folder")  # not versions at all
_REFUSED = 'outcome="refused"'


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _publish(root: Path, version: str, make: Callable[[Path, str], Path]) -> None:
    """Write a version aside, then rename it into place: the watcher never sees it half made."""
    staging = root.parent / f"staging-{version}"
    folder = make(staging, version)
    folder.rename(root / _MODEL / folder.name)


def _served(server: ServerProcess) -> str:
    return str(server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).version)


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_a_hostile_only_version_exits_1_with_one_line(tmp_path: Path, hostile: str) -> None:
    root = tmp_path / "models"
    HOSTILE[hostile](root, "1")
    result = run_serve(root, "--model-load-timeout-s", "60")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {root / _MODEL}"), lines[0]
    assert PROBLEMS[hostile] in lines[0], lines[0]


def test_a_new_replica_serves_the_newest_version_that_loads(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    HOSTILE["dev-zero-onnx"](root, "2")
    HOSTILE["5000-digit-integer"](root, "3")
    HOSTILE["superscript-two-folder"](root, "4")
    with ServerProcess(root, "--reload-interval-s", "0") as server:
        assert _served(server) == "1"
        assert server.metric("cvae_model_reloads_total", _REFUSED) == 2
        assert server.metric("cvae_model_refused_info", 'version="2"') == 1
        assert server.metric("cvae_model_refused_info", 'version="3"') == 1
        response = server.stub.Generate(pb.GenerateRequest(labels=[3], seed=1), timeout=30)
        assert response.model_version == "1"
        log = server.log()
        for version, problem in (("2", "dev-zero-onnx"), ("3", "5000-digit-integer")):
            lines = re.findall(rf"refused model version {version}: .*", log)
            assert len(lines) == 1 and PROBLEMS[problem] in lines[0], log
        assert "serving version 1, not the newest on disk: refused 3, 2" in log
        assert "Traceback" not in log
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0


def test_reload_survives_every_hostile_version_and_sigterm_drains(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    server = ServerProcess(root, "--reload-interval-s", "0.5", "--model-load-timeout-s", "60")
    with server:
        assert _served(server) == "1"
        refused = 0
        for number, hostile in enumerate(sorted(HOSTILE), start=2):
            _publish(root, str(number), HOSTILE[hostile])
            if hostile in _FOLDERS:
                continue
            refused += 1
            _wait_for(
                lambda count=refused: server.metric("cvae_model_reloads_total", _REFUSED) >= count,
                f"the refusal of {hostile}",
            )
        last = str(len(HOSTILE) + 2)
        _publish(root, last, lambda where, version: write_version(where, version))
        _wait_for(lambda: _served(server) == last, f"version {last}")
        assert server.metric("cvae_model_reloads_total", _REFUSED) == refused
        log = server.log()
        for number, hostile in enumerate(sorted(HOSTILE), start=2):
            lines = re.findall(rf"refused model version {number}: .*", log)
            if hostile in _FOLDERS:
                assert lines == [], lines
            else:
                assert len(lines) == 1 and PROBLEMS[hostile] in lines[0], (hostile, lines)
        response = server.stub.Generate(pb.GenerateRequest(labels=[7], seed=2), timeout=30)
        assert response.model_version == last
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0
        log = server.log()
        assert "stopped" in log
        assert "Traceback" not in log
