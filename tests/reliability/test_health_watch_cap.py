"""Health Watch and reflection streams are capped for the whole server (issue 14).

A Watch never ends by itself and holds ~23 KiB of the server; --max-streams-per-connection alone
let many connections hold millions. Real `cvae serve`, raw HTTP/2 watchers, no timing asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from tests.reliability.test_hostile_clients import WATCH, pump_until, victim_is_served
from tests.service.rawh2 import RawConnection, StreamState, grpc_frame
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(240)
_STATUS_RESOURCE_EXHAUSTED = "8"


def _watch(connection: RawConnection, count: int) -> list[StreamState]:
    request = grpc_frame(health_pb2.HealthCheckRequest().SerializeToString())
    ids = []
    for _ in range(count):
        ids.append(connection.open_call(WATCH))
        connection.send(ids[-1], request, end_stream=True)
    connection.flush()
    states = [connection.streams[i] for i in ids]
    pump_until(connection, lambda: all(s.data or s.ended for s in states), 60)
    return states


def test_watch_streams_beyond_the_server_cap_are_refused_on_any_connection(
    repository: Path,
) -> None:
    with (
        ServerProcess(repository, "--max-health-watches", "50") as server,
        RawConnection("127.0.0.1", server.port) as first,
        RawConnection("127.0.0.1", server.port) as second,
    ):
        first.pump(0.2)
        second.pump(0.2)
        states = _watch(first, 30) + _watch(second, 30)
        running = [s for s in states if s.data and not s.ended]
        refused = [s for s in states if s.status == _STATUS_RESOURCE_EXHAUSTED]
        assert len(running) == 50
        assert len(refused) == 10
        assert all("--max-health-watches" in s.headers["grpc-message"] for s in refused)
        assert server.metric("cvae_refusals_total", 'reason="watch_limit"') == 10
        victim_is_served(server)  # Check is never capped

        # A watcher that leaves gives its streams back.
        first.close()
        with server.new_channel() as channel:
            deadline = time.monotonic() + 60
            while True:
                watch = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(), timeout=30
                )
                try:
                    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                    assert time.monotonic() < deadline, "closed watchers kept their streams"
                    time.sleep(0.5)
                finally:
                    watch.cancel()


def test_reflection_streams_beyond_their_cap_are_refused(repository: Path) -> None:
    """Found by the red team: reflection streams were neither capped nor timed; 2,000 held on
    two connections grew the server by ~50 MiB, and more connections hold more."""
    info = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    request = grpc_frame(
        reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
    )
    with (
        ServerProcess(repository, "--max-reflection-streams", "5") as server,
        RawConnection("127.0.0.1", server.port) as tool,
    ):
        tool.pump(0.2)
        ids = []
        for _ in range(8):
            ids.append(tool.open_call(info))
            tool.send(ids[-1], request)  # and never ends its request stream
        tool.flush()
        states = [tool.streams[i] for i in ids]
        pump_until(tool, lambda: all(s.data or s.ended for s in states), 60)
        answering = [s for s in states if s.data and not s.ended]
        refused = [s for s in states if s.status == _STATUS_RESOURCE_EXHAUSTED]
        assert (len(answering), len(refused)) == (5, 3)
        assert all("--max-reflection-streams" in s.headers["grpc-message"] for s in refused)
        assert server.metric("cvae_refusals_total", 'reason="reflection_limit"') == 3
        victim_is_served(server)
