"""One cheap client must not deny service to everyone (issue 14, items 1-5).

Each test runs a real `cvae serve` and attacks it over real sockets: a raw HTTP/2 client
(tests/service/rawh2.py) for what gRPC clients never do, grpcio for the victims. No timing is
asserted: a victim's call must succeed within a generous deadline, that is all.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.reliability.memory import resident_mib
from tests.service.rawh2 import RawConnection, grpc_frame
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(240)
GENERATE = "/cvae.v1.Generator/Generate"
WATCH = "/grpc.health.v1.Health/Watch"
CHECK = "/grpc.health.v1.Health/Check"
_STATUS_CANCELLED = "1"
_STATUS_INVALID_ARGUMENT = "3"
_STATUS_RESOURCE_EXHAUSTED = "8"
_REFUSED_STREAM = 7  # HTTP/2 error codes
_CALM = 11


def victim_is_served(server: ServerProcess) -> None:
    """A fresh client's health check says SERVING and its Generate answers OK."""
    with server.new_channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=20)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        images = pb_grpc.GeneratorStub(channel).Generate(
            pb.GenerateRequest(labels=[1, 2], seed=3), timeout=20
        )
        assert list(images.labels) == [1, 2]


def pump_until(connection: RawConnection, done: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():  # type: ignore[operator]
        connection.pump(0.2)


@pytest.fixture
def guarded(repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repository, "--message-timeout-s", "3") as running:
        yield running


def test_600_half_sent_calls_on_one_connection_hold_no_slot_and_are_finished(
    guarded: ServerProcess,
) -> None:
    request = pb.GenerateRequest(labels=[1], seed=1).SerializeToString()
    with RawConnection("127.0.0.1", guarded.port) as attacker:
        attacker.pump(0.3)  # the server's SETTINGS
        no_message: list[int] = []
        no_data: list[int] = []
        lying: list[int] = []
        for _ in range(20):  # in rounds: gRPC core's queue of new calls stays short
            no_message += [attacker.open_call(GENERATE, end_stream=True) for _ in range(10)]
            no_data += [attacker.open_call(GENERATE) for _ in range(10)]
            for _ in range(10):  # promises a message 100 bytes longer than what follows
                lying.append(attacker.open_call(GENERATE))
                attacker.send(lying[-1], grpc_frame(request, claimed=len(request) + 100))
            attacker.flush()
            attacker.pump(0.1)

        # 600 calls sit on one connection (the default concurrency limit is 512): others pass.
        victim_is_served(guarded)

        # None is kept: a call without a message is answered at once, a half-sent one when
        # --message-timeout-s has passed; both free their stream.
        # (A call gRPC core's full queue of new calls refuses is CANCELLED: --max-pending-rpcs.)
        pump_until(attacker, lambda: attacker.answered() == 600, 60)
        statuses = [attacker.streams[s].status for s in no_message]
        assert set(statuses) <= {_STATUS_INVALID_ARGUMENT, _STATUS_CANCELLED}, statuses
        assert statuses.count(_STATUS_INVALID_ARGUMENT) >= 100
        timed_out = 0
        for stream_id in no_data + lying:
            state = attacker.streams[stream_id]
            assert state.status in (_STATUS_RESOURCE_EXHAUSTED, _STATUS_CANCELLED), state
            if state.status == _STATUS_RESOURCE_EXHAUSTED:
                assert "did not arrive within 3 s" in state.headers["grpc-message"]
                timed_out += 1
        assert timed_out >= 200
    assert guarded.metric("cvae_refusals_total", 'reason="message_timeout"') == timed_out
    victim_is_served(guarded)


def test_520_health_watch_streams_lock_no_one_out(repository: Path) -> None:
    with (
        ServerProcess(repository, "--max-concurrent-rpcs", "64") as server,
        RawConnection("127.0.0.1", server.port) as watcher,
    ):
        watcher.pump(0.3)
        watch = grpc_frame(health_pb2.HealthCheckRequest().SerializeToString())
        streams: list[int] = []
        for _ in range(26):  # in rounds: gRPC core's queue of new calls stays short
            for _ in range(20):
                streams.append(watcher.open_call(WATCH))
                watcher.send(streams[-1], watch, end_stream=True)
            watcher.flush()
            watcher.pump(0.1)
        # Every Watch runs (its first status, SERVING, came as a message) unless gRPC core's
        # full queue of new calls refused it (--max-pending-rpcs).
        states = [watcher.streams[s] for s in streams]
        pump_until(watcher, lambda: all(state.data or state.ended for state in states), 60)
        running = [state for state in states if state.data and not state.ended]
        assert len(running) + sum(state.status == _STATUS_CANCELLED for state in states) == 520
        assert len(running) > 64 * 4
        victim_is_served(server)


def test_calls_beyond_the_per_connection_stream_limit_are_refused(repository: Path) -> None:
    with (
        ServerProcess(repository, "--max-streams-per-connection", "20") as server,
        RawConnection("127.0.0.1", server.port) as attacker,
    ):
        # All sent before the server's SETTINGS are read, so h2 does not hold any back.
        streams = [attacker.open_call(GENERATE) for _ in range(30)]
        attacker.flush()
        pump_until(attacker, lambda: attacker.answered() >= 10, 30)
        assert attacker.h2.remote_settings.max_concurrent_streams == 20
        refused = [s for s in streams if attacker.streams[s].reset is not None]
        assert refused == streams[20:]  # gRPC resets them (ENHANCE_YOUR_CALM or REFUSED_STREAM)
        assert {attacker.streams[s].reset for s in refused} <= {_REFUSED_STREAM, _CALM}
        victim_is_served(server)


def test_an_aged_connection_is_closed_after_its_grace_whatever_is_open(
    repository: Path,
) -> None:
    """A Watch stream never ends by itself: the connection's bounded grace ends it."""
    args = ("--max-connection-age-s", "1", "--max-connection-age-grace-s", "1")
    with ServerProcess(repository, *args) as server, server.new_channel() as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=60
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value


def test_a_connection_without_calls_is_closed_after_the_idle_time(repository: Path) -> None:
    with (
        ServerProcess(repository, "--max-connection-idle-s", "1") as server,
        RawConnection("127.0.0.1", server.port) as idle,
    ):
        pump_until(idle, lambda: idle.goaway is not None, 60)
        assert idle.goaway is not None


def test_a_generate_flood_does_not_starve_health(repository: Path) -> None:
    """The concurrency limit counts data-plane calls only: with every slot held by streams
    being read, Generate is refused (and counted) while health answers SERVING."""
    with ServerProcess(repository, "--max-concurrent-rpcs", "3") as server:
        stub = server.stub
        job = pb.GenerateRequest(labels=[1] * 2_000_000, seed=7, chunk_size=1, omit_latents=True)
        streams = [stub.GenerateStream(job, timeout=60) for _ in range(3)]
        for stream in streams:
            assert next(stream).offset == 0
        # Read all along: a stream whose client stops reading lends its slot (test_stalled_streams).
        readers = [threading.Thread(target=_drain, args=(s,), daemon=True) for s in streams]
        for reader in readers:
            reader.start()
        with pytest.raises(grpc.RpcError) as refused:
            stub.Generate(pb.GenerateRequest(labels=[3], seed=1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-concurrent-rpcs" in refused.value.details()
        assert server.health() == health_pb2.HealthCheckResponse.SERVING
        assert server.metric("cvae_refusals_total", 'reason="concurrency_limit"') == 1
        for stream in streams:
            stream.cancel()
        for reader in readers:
            reader.join(30)


def _drain(stream: Iterator[pb.GenerateResponse]) -> None:
    with contextlib.suppress(grpc.RpcError):
        for _ in stream:
            pass


class LimitedServer(ServerProcess):
    """`cvae serve` started under RLIMIT_NOFILE soft:hard (prlimit), as a container sets it."""

    def __init__(self, repository: Path, nofile: str, *args: str) -> None:
        super().__init__(repository, *args)
        self.nofile = nofile

    @property
    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={self.nofile}", "--", *super().command]


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """TCP connections that say nothing (no HTTP/2 preface)."""
    opened = []
    for _ in range(count):
        opened.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    return opened


def _open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files line")


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_1100_idle_connections_under_a_1024_soft_limit_lock_no_one_out(
    repository: Path,
) -> None:
    with LimitedServer(repository, "1024:4096") as server:
        assert server.process is not None
        assert _open_files_limit(server.process.pid) == 4096  # raised to the hard limit
        idle = idle_connections(server.port, 1100)
        try:
            victim_is_served(server)
            assert "cvae_requests_total" in server.scrape()
        finally:
            for connection in idle:
                connection.close()


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_connections_are_capped_below_the_file_limit(repository: Path) -> None:
    """With no room to raise (soft = hard = 1024) the server takes fewer connections than it has
    descriptors: /metrics still answers, and idle connections that never speak are dropped
    after the handshake timeout, so that a new client gets in."""
    with LimitedServer(repository, "1024:1024") as server:
        idle = idle_connections(server.port, 1100)
        try:
            assert "cvae_requests_total" in server.scrape()
            deadline = time.monotonic() + 90
            while True:
                try:
                    victim_is_served(server)
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "no new client got in"
                    time.sleep(1)
            assert "cvae_requests_total" in server.scrape()
        finally:
            for connection in idle:
                connection.close()


def test_100_unread_million_label_streams_stay_within_the_stream_budget(
    repository: Path,
) -> None:
    """Each stream is read for one chunk and then left: the server holds its labels (one byte
    each) and two chunks; what does not fit --stream-memory-mib is refused at once."""
    job = pb.GenerateRequest(labels=[7] * 1_000_000, seed=5, chunk_size=256)
    # A queue that takes every stream's chunks: memory, not the queue, is what is tested.
    with ServerProcess(repository, "--queue-size", "65536") as server:
        assert server.process is not None
        victim_is_served(server)
        before = resident_mib(server.process.pid)
        with server.new_channel() as channel:
            stub = pb_grpc.GeneratorStub(channel)
            streams = [stub.GenerateStream(job, timeout=120) for _ in range(100)]
            opened = refused = 0
            for stream in streams:
                try:
                    assert next(stream).offset == 0
                    opened += 1
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.CANCELLED:  # --max-pending-rpcs
                        continue
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                    assert "--stream-memory-mib" in error.details()
                    refused += 1
            peak = resident_mib(server.process.pid)
            victim_is_served(server)
            for stream in streams:
                stream.cancel()
        assert opened >= 50  # the budget holds most of them: it is a budget, not a wall
        assert peak - before < 512, (before, peak, opened)
        counted = server.metric("cvae_refusals_total", 'reason="stream_memory"')
        assert counted == refused


def test_a_client_that_blocks_flow_control_then_resets_leaves_no_error(
    repository: Path,
) -> None:
    """The server's answer waits on a zero window; the client then resets the TCP connection.
    grpc.aio logged one ERROR traceback per such connection; nothing failed on the server."""
    request = grpc_frame(pb.GenerateRequest(labels=[1] * 1000, seed=1).SerializeToString())
    with ServerProcess(repository) as server:
        for method in (GENERATE, "/cvae.v1.Generator/GenerateStream") * 3:
            connection = RawConnection("127.0.0.1", server.port, window=0)
            connection.pump(0.2)
            stream_id = connection.open_call(method)
            connection.send(stream_id, request, end_stream=True)
            connection.flush()
            answered = connection.streams[stream_id]
            pump_until(connection, lambda s=answered: bool(s.headers), 20)  # type: ignore[misc]
            connection.sock.setsockopt(  # close with RST, not FIN
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            connection.sock.close()
        victim_is_served(server)
        log = server.log()
    assert "Traceback" not in log and " ERROR " not in log, log
