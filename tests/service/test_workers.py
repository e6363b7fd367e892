"""`cvae serve --workers N`: several real server processes on one port, under one supervisor.

Which worker holds a connection is read from the kernel (/proc): the server side of each
established TCP connection to the port belongs to exactly one worker's file descriptors.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess, run_serve

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc"),
]
_SERVING_LINE = re.compile(r"\[worker (\d+) pid (\d+)\] service\.server: SERVING .* on \S+:(\d+) ")


def _marked() -> dict[str, str]:
    """An environment variable that every process of one server inherits, to find them later."""
    return {"CVAE_TEST_MARK": uuid.uuid4().hex}


def _processes_with(mark: dict[str, str]) -> list[int]:
    """Pids of live (not zombie) processes whose environment carries `mark`."""
    (key, value), = mark.items()  # fmt: skip
    wanted = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def _wait_workers_serving(
    server: ServerProcess, count: int, timeout: float = 60.0
) -> dict[int, int]:
    """Wait until each of `count` workers logged SERVING; {worker index: pid}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _SERVING_LINE.findall(server.log())
        if len(lines) == count:
            assert {int(port) for _, _, port in lines} == {server.port}, lines
            return {int(index): int(pid) for index, pid, _ in lines}
        assert server.process is not None and server.process.poll() is None, server.log()
        time.sleep(0.05)
    raise AssertionError(f"{count} workers not SERVING after {timeout} s:\n{server.log()}")


def _start_workers(
    repository: Path, *args: str, metrics: bool = True
) -> tuple[ServerProcess, dict[int, int]]:
    server = ServerProcess(repository, "--workers", "2", *args, metrics=metrics).start()
    return server, _wait_workers_serving(server, 2)


def _server_side_sockets(port: int) -> set[str]:
    """Socket inodes of established connections whose local end is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def _connections_of(pid: int, port: int) -> int:
    inodes = _server_side_sockets(port)
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[len("socket:[") : -1] in inodes:
            count += 1
    return count


def _channels_per_worker(
    server: ServerProcess, pids: dict[int, int], each: int = 2, most: int = 60
) -> dict[int, list[grpc.Channel]]:
    """Open channels (one TCP connection each) until every worker holds `each` of them."""
    owned: dict[int, list[grpc.Channel]] = {index: [] for index in pids}
    before = {index: _connections_of(pid, server.port) for index, pid in pids.items()}
    for _ in range(most):
        channel = grpc.insecure_channel(
            server.address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        _health(channel)  # connects
        after = {index: _connections_of(pid, server.port) for index, pid in pids.items()}
        grown = [index for index in pids if after[index] > before[index]]
        assert len(grown) == 1, (before, after)
        owned[grown[0]].append(channel)
        before = after
        if all(len(channels) >= each for channels in owned.values()):
            return owned
    raise AssertionError(f"connections did not reach every worker: {owned}")


def _health(channel: grpc.Channel) -> int:
    request = health_pb2.HealthCheckRequest(service="cvae.v1.Generator")
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def _value(text: str, name: str, **labels: str) -> float:
    return sum(value for found, value in _samples(text, name) if labels.items() <= found.items())


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if not _gone(pid)]


@pytest.fixture(scope="module")
def two_workers(shared_repo: Path) -> Iterator[tuple[ServerProcess, dict[int, int]]]:
    server, pids = _start_workers(shared_repo, "--max-delay-ms", "5")
    with server:
        yield server, pids


def test_every_worker_is_serving_and_answers_with_identical_images(
    two_workers: tuple[ServerProcess, dict[int, int]],
) -> None:
    server, pids = two_workers
    channels = _channels_per_worker(server, pids)
    request = pb.GenerateRequest(labels=list(range(10)), seed=1234, encoding=pb.UINT8)
    answers = {}
    for index, owned in channels.items():
        for channel in owned:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            reply = pb_grpc.GeneratorStub(channel).Generate(request, timeout=30)
            answers.setdefault(index, set()).add(reply.images.data)
            channel.close()
    assert set(answers) == {0, 1}
    assert len(set.union(*answers.values())) == 1  # the same bytes from each worker


def test_the_supervisor_never_loads_grpc_or_onnxruntime(
    two_workers: tuple[ServerProcess, dict[int, int]],
) -> None:
    server, pids = two_workers
    assert server.process is not None
    supervisor = Path(f"/proc/{server.process.pid}/maps").read_text()
    worker = Path(f"/proc/{pids[0]}/maps").read_text()
    assert "cygrpc" in worker and "onnxruntime" in worker
    assert "cygrpc" not in supervisor and "onnxruntime" not in supervisor


def test_supervisor_metrics_sum_the_workers(
    two_workers: tuple[ServerProcess, dict[int, int]],
) -> None:
    server, pids = two_workers
    channels = _channels_per_worker(server, pids, each=1)
    before = server.scrape()
    calls = 7
    for owned in channels.values():
        stub = pb_grpc.GeneratorStub(owned[0])
        for _ in range(calls):
            stub.Generate(pb.GenerateRequest(labels=[3, 4]), timeout=30)
        owned[0].close()
    after = server.scrape()

    def grown(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    sent = calls * len(channels)
    assert grown("cvae_requests_total", method="Generate", code="OK") == sent
    assert grown("cvae_request_duration_seconds_count", method="Generate") == sent
    assert grown("cvae_images_generated_total") == 2 * sent
    assert _samples(after, "cvae_model_info") == [({"name": "cvae-mnist", "version": "1"}, 1.0)]
    assert _samples(after, "cvae_queue_depth") == [({}, 0.0)]
    memory = _samples(after, "cvae_worker_process_resident_memory_bytes")
    assert {(labels["worker"], int(labels["pid"])) for labels, _ in memory} == {
        (str(index), pid) for index, pid in pids.items()
    }
    assert all(value > 10e6 for _, value in memory)
    assert _value(after, "process_resident_memory_bytes") > 0  # the supervisor's own


def test_reload_signal_reaches_every_worker(model_repo: Path) -> None:
    server, pids = _start_workers(model_repo, "--reload-interval-s", "0", metrics=False)
    try:
        channels = _channels_per_worker(server, pids, each=1)
        write_version(model_repo, "2")
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        for owned in channels.values():
            stub = pb_grpc.GeneratorStub(owned[0])
            while stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).version != "2":
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)
            owned[0].close()
    finally:
        server.stop()
    assert server.wait() == 0


def test_sigterm_drains_every_worker_and_exits_zero(model_repo: Path) -> None:
    server, pids = _start_workers(model_repo, "--grace-period-s", "30", metrics=False)
    try:
        channels = _channels_per_worker(server, pids, each=1)
        pending = [
            pb_grpc.GeneratorStub(owned[0]).Generate.future(
                pb.GenerateRequest(labels=[2] * 1024, seed=index), timeout=120
            )
            for owned in channels.values()
            for index in range(3)
        ]
        time.sleep(0.3)  # the workers have received them
        server.signal(signal.SIGTERM)
        assert all(len(call.result().images.data) == 1024 * 784 for call in pending)
        assert server.wait(30) == 0
        assert "all 2 workers stopped" in server.log()
        assert _wait_gone(list(pids.values())) == []
    finally:
        server.stop()


def test_a_dead_worker_stops_the_others_and_the_supervisor_fails(model_repo: Path) -> None:
    server, pids = _start_workers(model_repo, "--grace-period-s", "5", metrics=False)
    try:
        os.kill(pids[0], signal.SIGKILL)
        assert server.wait(30) != 0
        assert f"worker 0 (pid {pids[0]}) was killed by signal 9" in server.log()
        assert _wait_gone([pids[1]]) == []
    finally:
        server.stop()


def test_killed_supervisor_takes_its_workers_along_and_port_zero_is_shared(
    model_repo: Path, tmp_path: Path
) -> None:
    mark = _marked()
    env = {**mark, "TMPDIR": str(tmp_path)}  # a killed supervisor leaves its metrics folder
    server = ServerProcess(model_repo, "--workers", "2", "--port", "0", metrics=False, env=env)
    server.start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while len(lines := _SERVING_LINE.findall(server.log())) < 2:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        assert len({port for _, _, port in lines}) == 1  # both workers on the picked port
        server.port = int(lines[0][2])
        assert server.health() == health_pb2.HealthCheckResponse.SERVING
        workers = [int(pid) for _, pid, _ in lines]
        server.signal(signal.SIGKILL)
        assert _wait_gone(workers) == []
        assert _wait_gone(_processes_with(mark)) == []  # nothing else it started either
    finally:
        server.stop()
        for pid in _processes_with(mark):  # only if the test failed
            os.kill(pid, signal.SIGKILL)


def test_missing_repository_fails_before_any_worker_starts(tmp_path: Path) -> None:
    mark = _marked()
    result = run_serve(tmp_path / "absent", "--workers", "2", env=mark)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"cvae serve: {tmp_path / 'absent'}: model repository folder does not exist"
    )
    assert _processes_with(mark) == []


def test_a_model_no_worker_can_load_gives_one_clear_line(tmp_path: Path) -> None:
    mark = _marked()
    folder = write_version(tmp_path, "1", breakage="truncated_onnx")
    result = run_serve(tmp_path, "--workers", "2", env=mark)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {folder / 'model.onnx'}")
    assert "onnxruntime cannot load it" in lines[0]
    assert _wait_gone(_processes_with(mark)) == []


def test_busy_port_fails_before_any_worker_starts(model_repo: Path) -> None:
    with ServerProcess(model_repo, metrics=False) as running:  # one process owns its port
        result = run_serve(model_repo, "--workers", "2", "--port", str(running.port))
    assert result.returncode == 1
    assert f"--port {running.port}: cannot listen" in result.stderr


def test_zero_workers_is_refused_naming_flag_and_variable(model_repo: Path) -> None:
    result = run_serve(model_repo, "--workers", "0")
    assert result.returncode == 2
    assert "--workers (CVAE_WORKERS): 0 is outside [1, 64]" in result.stderr


def test_workers_start_on_the_port_a_stopped_server_just_left(model_repo: Path) -> None:
    """The stopped server's connections linger in TIME_WAIT on the port; the supervisor's port
    reservation must not fail on them (SO_REUSEADDR, as gRPC's own listeners)."""
    with ServerProcess(model_repo, metrics=False) as single:
        for _ in range(3):  # the server closes first (not HTTP/2): its side stays in TIME_WAIT
            with socket.create_connection(("127.0.0.1", single.port), timeout=10) as raw:
                raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
                while raw.recv(4096):
                    pass
        port = single.port
    workers = ServerProcess(model_repo, "--workers", "2", metrics=False)
    workers.port = port
    try:
        workers.start()
        _wait_workers_serving(workers, 2)
    finally:
        workers.stop()


def test_a_stopped_worker_is_detected_and_handled_as_a_dead_one(model_repo: Path) -> None:
    """SIGSTOP leaves the process present but dead to its callers: its missing heartbeat gets
    it killed, the other worker stops and the supervisor exits 1 (the pod restarts)."""
    args = ("--worker-liveness-s", "3", "--grace-period-s", "5")
    server, pids = _start_workers(model_repo, *args, metrics=False)
    try:
        os.kill(pids[0], signal.SIGSTOP)
        assert server.wait(60) == 1
        assert f"worker 0 (pid {pids[0]}) has not answered for" in server.log()
        assert _wait_gone(list(pids.values())) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[0], signal.SIGKILL)
        server.stop()
