"""The keepalive policy (docs/generate.md, "Keepalive") on a real server: a client pinging faster
than it allows is sent away with GOAWAY too_many_pings; cvae.client's own pings stay within it."""

from __future__ import annotations

import threading

import grpc
import pytest

from cvae.client import channel
from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from service.server import KEEPALIVE_MIN_CLIENT_PING_S
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)


def test_the_client_library_pings_well_within_the_server_policy() -> None:
    options = dict(channel.channel_options(None))
    # Twice the minimum at least: timers drift, and strikes add up over a long stream.
    assert options["grpc.keepalive_time_ms"] >= 2 * KEEPALIVE_MIN_CLIENT_PING_S * 1000
    assert options["grpc.keepalive_timeout_ms"] < options["grpc.keepalive_time_ms"]


def _pinging_connection_survives(server: ServerProcess, every_ms: int, seconds: float) -> bool:
    """Hold one stream open, unread (no data flows, so each ping too soon is a strike), while
    the channel pings every `every_ms`: True unless the server sends the connection away."""
    options = [
        ("grpc.keepalive_time_ms", every_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging while no data flows
    ]
    with grpc.insecure_channel(server.address, options=options) as pinging:
        stub = pb_grpc.GeneratorStub(pinging)
        request = pb.GenerateRequest(labels=[1] * 1_000_000, chunk_size=256, omit_latents=True)
        call = stub.GenerateStream(request, timeout=120)
        next(call)
        gone = threading.Event()

        def watch(state: grpc.ChannelConnectivity) -> None:
            if state is not grpc.ChannelConnectivity.READY:  # GOAWAY: the channel lets go
                gone.set()

        pinging.subscribe(watch)
        sent_away = gone.wait(seconds)
        call.cancel()
    return not sent_away


def test_pings_faster_than_the_policy_end_the_connection_and_slower_ones_do_not(
    server: ServerProcess,
) -> None:
    assert not _pinging_connection_survives(server, 1000, seconds=30)
    allowed_ms = (KEEPALIVE_MIN_CLIENT_PING_S + 1) * 1000
    assert _pinging_connection_survives(server, allowed_ms, seconds=3.5 * allowed_ms / 1000)
