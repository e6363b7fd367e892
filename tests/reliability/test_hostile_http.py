"""The OIP HTTP port (--http-port) under hostile clients: the gRPC port's limits hold there too
(issue 14). Real `cvae serve`, raw TCP sockets and urllib; no timing asserted."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cvae.v1 import generator_pb2 as pb
from tests.reliability.test_hostile_clients import victim_is_served
from tests.service.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.timeout(240)
INFER = "/v2/models/cvae-mnist/infer"


class HttpServer(ServerProcess):
    def __init__(self, repository: Path, *args: str) -> None:
        self.http_port = free_port()
        super().__init__(repository, "--http-port", str(self.http_port), *args)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.http_port), timeout=30)

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()


def _infer_body(count: int) -> bytes:
    document = {
        "inputs": [{"name": "label", "shape": [count], "datatype": "INT32", "data": [1] * count}],
    }
    return json.dumps(document).encode()


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends before it closes the connection (b"" if nothing); fails when the
    connection is still open after `seconds`."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s; received {received[:80]!r}") from None
    except ConnectionResetError:
        pass
    return received


@pytest.fixture
def oip(repository: Path) -> Iterator[HttpServer]:
    with HttpServer(repository, "--message-timeout-s", "2") as running:
        yield running


def test_slow_headers_and_idle_connections_are_closed_after_the_message_timeout(
    oip: HttpServer,
) -> None:
    silent = oip.connect()
    trickling = oip.connect()
    trickling.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    kept_alive = oip.connect()
    kept_alive.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
    kept_alive.settimeout(30)
    assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
    for sock in (silent, trickling, kept_alive):
        assert _closed_within(sock, 60) == b""
        sock.close()
    assert oip.metric("cvae_refusals_total", 'reason="message_timeout"') == 3
    assert oip.request("GET", "/v2/health/ready")[0] == 200


def test_a_body_that_does_not_arrive_is_answered_408(oip: HttpServer) -> None:
    slow = oip.connect()
    slow.sendall(
        b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    answer = _closed_within(slow, 60)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"--message-timeout-s" in answer
    assert oip.metric("cvae_refusals_total", 'reason="message_timeout"') == 1
    status, _ = oip.request("POST", INFER, _infer_body(2), **{"Content-Type": "application/json"})
    assert status == 200


def test_a_compressed_body_is_capped_by_its_decoded_size(repository: Path) -> None:
    with HttpServer(repository, "--max-message-bytes", "65536") as server:
        bomb = gzip.compress(b" " * (64 << 20))  # 64 MiB of spaces: ~64 KiB on the wire
        status, body = server.request(
            "POST", INFER, bomb, **{"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
        assert status == 413, body
        assert server.request("GET", "/v2/health/live")[0] == 200


def test_infer_calls_share_the_concurrency_limit_with_grpc(repository: Path) -> None:
    """Both slots are held by infer calls whose bodies trickle in: a health call still answers,
    an infer beyond the limit gets 429, and a gRPC Generate is refused from the same count."""
    with HttpServer(
        repository, "--max-concurrent-rpcs", "2", "--message-timeout-s", "30"
    ) as server:
        header = (
            b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        holders = [server.connect() for _ in range(2)]
        for sock in holders:
            sock.sendall(header)  # each infer holds its slot while its body trickles
        deadline = time.monotonic() + 60
        while True:
            status, body = server.request(
                "POST", INFER, _infer_body(1), **{"Content-Type": "application/json"}
            )
            if status == 429:
                break
            assert time.monotonic() < deadline, (status, body)
            time.sleep(0.2)
        assert b"--max-concurrent-rpcs" in body
        with pytest.raises(grpc.RpcError) as refused:
            server.stub.Generate(pb.GenerateRequest(labels=[1], seed=1), timeout=20)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert server.request("GET", "/v2/health/ready")[0] == 200
        assert server.metric("cvae_refusals_total", 'reason="concurrency_limit"') >= 1
        for sock in holders:
            sock.close()
        victim_is_served(server)


def test_connections_beyond_the_cap_are_closed_at_once(repository: Path) -> None:
    """--max-connections 40: each port takes 20; the 21st HTTP connection is closed."""
    with HttpServer(repository, "--max-connections", "40", "--message-timeout-s", "30") as server:
        held = [server.connect() for _ in range(20)]
        time.sleep(0.5)  # let the server accept them (no timing asserted: only an order)
        extra = server.connect()
        assert _closed_within(extra, 30) == b""
        held.pop().close()
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.request("GET", "/v2/health/live")[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                assert time.monotonic() < deadline
                time.sleep(0.2)
        for sock in held:
            sock.close()


def test_answers_nobody_reads_are_counted_and_their_connections_closed(
    repository: Path,
) -> None:
    """Found by the red team: answers a client does not read sat in the server's buffers for as
    long as the client stayed (60 of 1,024 images: +122 MiB)."""
    body = json.dumps(
        {"inputs": [{"name": "label", "shape": [1024], "datatype": "INT32", "data": [1] * 1024}]}
    ).encode()
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    args = ("--stream-write-timeout-s", "2")
    with HttpServer(repository, *args) as server:
        readers = []
        for _ in range(10):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.http_port))
            sock.sendall((head + body) * 4)  # pipelined, and never reads
            readers.append(sock)
        deadline = time.monotonic() + 60
        while server.metric("cvae_refusals_total", 'reason="write_stalled"') < 1:
            assert time.monotonic() < deadline, "no unread answer was given up"
            time.sleep(0.5)
        for sock in readers:
            sock.close()
        status, _ = server.request(
            "POST", INFER, _infer_body(2), **{"Content-Type": "application/json"}
        )
        assert status == 200
