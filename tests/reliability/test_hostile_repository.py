"""A hostile model repository: no single file stops hot reload, hangs the server or
poisons what it serves. Real `cvae serve` processes on real files (tests/service/hostile.py).

- start-up with only a hostile version: exit 1 with one line naming the file and the problem;
- start-up with hostile versions newer than a good one: the good one serves, each newer one is
  refused on its own, logged and counted (a new replica does not crash-loop);
- hot reload beside every hostile version at once: the watcher lives on, a later good version
  loads, and SIGTERM still drains and exits 0.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.service.hostile import HOSTILE, PROBLEMS, external_weights, hung, zero_file
from tests.service.modelrepo import DecoderSpec, write_version
from tests.service.serverproc import ServerProcess, run_serve

pytestmark = pytest.mark.timeout(300)
_MODEL = "cvae-mnist"
_FOLDERS = ("superscript-two-folder", "arabic-three-folder")  # not versions at all
_REFUSED = 'outcome="refused"'
HOSTILE_HUNG = hung
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health_or_none(server: ServerProcess) -> int | None:
    try:
        return int(server.health())
    except grpc.RpcError:
        return None


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


def test_an_only_version_whose_load_never_ends_exits_1_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "models"
    HOSTILE_HUNG(root, "1")
    result = run_serve(root, "--model-load-timeout-s", "2")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {root / _MODEL / '1'}: loading did not finish"), lines
    assert "within 2 s (--model-load-timeout-s)" in lines[0]


def test_a_new_replica_serves_the_newest_version_that_loads(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    HOSTILE["dev-zero-onnx"](root, "2")
    HOSTILE["5000-digit-integer"](root, "3")
    HOSTILE["superscript-two-folder"](root, "4")
    with ServerProcess(root, "--reload-interval-s", "0") as server:
        assert _served(server) == "1"
        assert server.metric("cvae_model_reloads_total", _REFUSED) == 2
        assert server.metric("cvae_model_refused_info", 'name="cvae-mnist",version="2"') == 1
        assert server.metric("cvae_model_refused_info", 'name="cvae-mnist",version="3"') == 1
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


def test_workers_serve_the_newest_version_that_loads(tmp_path: Path) -> None:
    """--workers 2: the supervisor does not refuse to start, each worker serves version 1."""
    root = tmp_path / "models"
    write_version(root, "1")
    HOSTILE["dev-zero-onnx"](root, "2")
    with ServerProcess(root, "--workers", "2", "--reload-interval-s", "0") as server:
        for _ in range(4):  # new connections: the kernel spreads them over the workers
            with server.new_channel() as channel:
                stub = pb_grpc.GeneratorStub(channel)
                assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).version == "1"
        assert server.metric("cvae_model_refused_info", 'name="cvae-mnist",version="2"') == 1
        assert server.metric("cvae_model_reloads_total", _REFUSED) == 2  # once per worker
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
        # SIGTERM drains: a stream in flight when it comes gets every chunk.
        chunks = 8
        request = pb.GenerateRequest(labels=[7] * (256 * chunks), seed=1, chunk_size=256)
        stream = server.stub.GenerateStream(request, timeout=120)
        first = next(stream)
        server.signal(signal.SIGTERM)
        rest = []
        for chunk in stream:  # slowly: the server keeps draining meanwhile
            rest.append(chunk)
            time.sleep(0.02)
        assert [c.offset for c in [first, *rest]] == [256 * i for i in range(chunks)]
        assert server.wait(60) == 0
        log = server.log()
        assert "stopped" in log
        assert "Traceback" not in log


def test_sigterm_during_a_load_that_never_ends_exits_0(tmp_path: Path) -> None:
    """The only version's warm-up never ends: SIGTERM still stops the server, at once."""
    root = tmp_path / "models"
    HOSTILE_HUNG(root, "1")
    server = ServerProcess(root, "--model-load-timeout-s", "600").start(wait=False)
    try:
        _wait_for(lambda: _health_or_none(server) == NOT_SERVING, "the port, NOT_SERVING")
        time.sleep(1.0)  # the load is under way (its warm-up never returns)
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0, server.log()
        assert "stop signal during start-up: the model load is abandoned" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_sigterm_during_a_reload_that_never_ends_drains_and_exits_0(tmp_path: Path) -> None:
    """A hot reload whose warm-up never ends holds neither the stop nor the drain."""
    root = tmp_path / "models"
    write_version(root, "1")
    args = ("--model-load-timeout-s", "600", "--reload-interval-s", "0.2")
    with ServerProcess(root, *args) as server:
        _publish(root, "2", HOSTILE_HUNG)
        time.sleep(2.0)  # the watcher found it and its load is under way
        stream = server.stub.GenerateStream(
            pb.GenerateRequest(labels=[3] * 1024, seed=1, chunk_size=256), timeout=120
        )
        first = next(stream)
        assert first.model_version == "1"
        server.signal(signal.SIGTERM)
        assert len([first, *stream]) == 4
        assert server.wait(60) == 0, server.log()
        assert "stopped" in server.log()
        assert "Traceback" not in server.log()


def test_a_load_past_its_timeout_is_abandoned_and_later_versions_load(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    HOSTILE_HUNG(root, "2")
    args = ("--model-load-timeout-s", "3", "--reload-interval-s", "0.5")
    with ServerProcess(root, *args) as server:
        assert _served(server) == "1"
        lines = re.findall(r"refused model version 2: .*", server.log())
        assert len(lines) == 1 and "did not finish within 3 s" in lines[0], lines
        _publish(root, "3", HOSTILE_HUNG)
        _wait_for(lambda: "refused model version 3" in server.log(), "version 3 abandoned")
        _publish(root, "4", lambda where, version: write_version(where, version))
        _wait_for(lambda: _served(server) == "4", "version 4")
        assert server.metric("cvae_model_reloads_total", _REFUSED) == 2
        server.signal(signal.SIGTERM)  # two abandoned loads still spin in their threads
        assert server.wait(60) == 0, server.log()
        assert "stopped" in server.log()
        assert "Traceback" not in server.log()


def test_external_weights_are_part_of_the_integrity_record(tmp_path: Path) -> None:
    """weights.bin listed under "files" serves; zeroed weights (grey images) are refused."""
    root = tmp_path / "models"
    external_weights(listed=True)(root, "1")
    with ServerProcess(root, "--reload-interval-s", "0.5") as server:
        response = server.stub.Generate(pb.GenerateRequest(labels=[2], seed=3), timeout=30)
        assert response.model_version == "1"

        def zeroed(where: Path, version: str) -> Path:
            folder = external_weights(listed=True)(where, version)
            zero_file(folder / "weights.bin")
            return folder

        _publish(root, "2", zeroed)
        _wait_for(lambda: "refused model version 2" in server.log(), "the refusal")
        line = re.findall(r"refused model version 2: .*", server.log())[0]
        assert "weights.bin: sha256" in line and "does not match" in line, line
        assert _served(server) == "1"


def _images(server: ServerProcess, version: str) -> bytes:
    request = pb.GenerateRequest(labels=[1, 8], seed=4, model_version=version)
    response = server.stub.Generate(request, timeout=30)
    return bytes(response.images.data)


def test_a_republished_version_serves_its_new_files(tmp_path: Path) -> None:
    """Replicas started later read the files on disk: a running one must serve them too."""
    root = tmp_path / "models"
    write_version(root, "1", spec=DecoderSpec(seed=1))
    write_version(root, "2", spec=DecoderSpec(seed=2))
    fresh = tmp_path / "fresh"
    write_version(fresh, "2", spec=DecoderSpec(seed=3))
    with ServerProcess(root, "--reload-interval-s", "0.5") as server:
        before = _images(server, "2")
        (root / _MODEL / "1" / "model.json").touch()  # same bytes: nothing to reload
        shutil.rmtree(root / _MODEL / "2")
        (fresh / _MODEL / "2").rename(root / _MODEL / "2")  # version 2, other bytes
        _wait_for(lambda: "version 2 was republished with other files" in server.log(), "it")
        after = _images(server, "2")
        assert after != before
        with ServerProcess(root, metrics=False) as replica:  # started later: the same bytes
            assert _images(replica, "2") == after
        assert "version 1 was republished" not in server.log()
        assert server.metric("cvae_model_reloads_total", _REFUSED) == 0
