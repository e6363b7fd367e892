"""Streams whose client stops reading (issue 14, the slot half of item 1).

A GenerateStream's write waits on HTTP/2 flow control while its client does not read. With
chunk_size 1 such streams cost the attacker next to nothing, and each held a
--max-concurrent-rpcs slot until its deadline (forever without one): a few of them refused every
Generate. Now a stalled stream lends its slot to the next call and ends after
--stream-write-timeout-s (service/guard.py). Real `cvae serve`, real sockets; no timing asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.reliability.test_hostile_clients import WATCH, victim_is_served
from tests.service.rawh2 import RawConnection, grpc_frame
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(240)
STREAM = "/cvae.v1.Generator/GenerateStream"
_STATUS_RESOURCE_EXHAUSTED = "8"
# Long enough that no stream here ends by its timeout: what frees a slot is the lending.
_NEVER = "600"


def _unread_streams(stub: pb_grpc.GeneratorStub, count: int) -> list[grpc.Future]:
    """`count` streams of one image a message, each read once and then left unread."""
    job = pb.GenerateRequest(labels=[4] * 200_000, seed=2, chunk_size=1)
    streams = [stub.GenerateStream(job) for _ in range(count)]  # no deadline: held forever
    for stream in streams:
        assert next(stream).offset == 0
    return streams


def _generate_until_served(stub: pb_grpc.GeneratorStub, seconds: float) -> int:
    """One-image Generates until one answers OK; returns how many were refused first."""
    refused = 0
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = stub.Generate(pb.GenerateRequest(labels=[3], seed=1), timeout=20)
            assert list(answer.labels) == [3]
            return refused
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            refused += 1
            assert time.monotonic() < deadline, f"refused {refused} times: slots stay held"
            time.sleep(0.5)


def test_streams_nobody_reads_lend_their_slots_to_other_callers(repository: Path) -> None:
    args = ("--max-concurrent-rpcs", "4", "--stream-write-timeout-s", _NEVER)
    with ServerProcess(repository, *args) as server:
        with server.new_channel() as attacker:
            streams = _unread_streams(pb_grpc.GeneratorStub(attacker), 4)
            with server.new_channel() as victim:
                stub = pb_grpc.GeneratorStub(victim)
                _generate_until_served(stub, 60)  # it took the slot of a stalled stream
                victim_is_served(server)
            lent = server.metric("cvae_refusals_total", 'reason="write_stalled"')
            assert lent >= 1
            assert server.health() == health_pb2.HealthCheckResponse.SERVING
            for stream in streams:
                stream.cancel()
        counted = server.metric(
            "cvae_requests_total",
            'code="RESOURCE_EXHAUSTED",method="GenerateStream",protocol="cvae.v1"',
        )
        assert counted == lent  # the stream's end is counted as the refusal it is


def test_zero_window_streams_on_many_connections_lock_no_one_out(repository: Path) -> None:
    """A raw HTTP/2 client that never opens flow control: its streams stall at their first
    message. Spread over connections, so that no share per connection could stop them."""
    request = grpc_frame(pb.GenerateRequest(labels=[1] * 1000, chunk_size=1).SerializeToString())
    args = ("--max-concurrent-rpcs", "8", "--stream-write-timeout-s", _NEVER)
    with ServerProcess(repository, *args) as server:
        connections = [RawConnection("127.0.0.1", server.port, window=0) for _ in range(4)]
        try:
            for connection in connections:
                connection.pump(0.2)
                for _ in range(4):  # 16 streams for 8 slots
                    stream_id = connection.open_call(STREAM)
                    connection.send(stream_id, request, end_stream=True)
                connection.flush()
            for connection in connections:
                connection.pump(0.5)
            with server.new_channel() as victim:
                _generate_until_served(pb_grpc.GeneratorStub(victim), 60)
            victim_is_served(server)
        finally:
            for connection in connections:
                connection.close()


def test_a_stream_whose_client_stops_reading_ends_with_a_status_that_says_so(
    repository: Path,
) -> None:
    """Its slot and memory are free once --stream-write-timeout-s has passed; a client that
    reads again gets what was sent, then RESOURCE_EXHAUSTED naming the flag."""
    with ServerProcess(repository, "--stream-write-timeout-s", "2") as server:
        stream = _unread_streams(server.stub, 1)[0]
        deadline = time.monotonic() + 60
        while server.metric("cvae_refusals_total", 'reason="write_stalled"') < 1:
            assert time.monotonic() < deadline, "the stalled stream did not end"
            time.sleep(0.5)
        received = 1
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                received += 1
        assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ended.value
        assert "--stream-write-timeout-s" in (ended.value.details() or "")
        assert 1 < received < 200_000
        victim_is_served(server)
        assert "Traceback" not in server.log()


def test_health_watch_is_never_ended_for_not_reading(repository: Path) -> None:
    """Watch streams are not the data plane's: they take no slot and have none to lend."""
    with (
        ServerProcess(repository, "--stream-write-timeout-s", "1") as server,
        RawConnection("127.0.0.1", server.port, window=0) as watcher,
    ):
        watcher.pump(0.2)
        stream_id = watcher.open_call(WATCH)
        watcher.send(stream_id, grpc_frame(health_pb2.HealthCheckRequest().SerializeToString()))
        watcher.flush()
        watcher.pump(3)
        assert watcher.streams[stream_id].status != _STATUS_RESOURCE_EXHAUSTED
        assert server.metric("cvae_refusals_total", 'reason="write_stalled"') == 0
