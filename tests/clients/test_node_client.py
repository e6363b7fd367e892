"""A foreign client: Node.js with @grpc/grpc-js and @grpc/proto-loader (pinned by
tests/clients/node/package-lock.json; `make test` runs `npm ci` there) against a real server.

It gets the Python client's bytes for every RPC and encoding, the same error codes, and its
cancellations and deadline races (grpc-js's small flow-control window leaves the server waiting
in a write when the client goes) are counted by the server as the client saw them, with no
INTERNAL and no ERROR line in the server's log.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from cvae.v1 import generator_pb2 as pb
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess
from tests.tools import require

pytestmark = pytest.mark.timeout(600)
_CLIENT = Path(__file__).parent / "node"
_RACES = 30


def _node(server: ServerProcess, *args: str, timeout: float = 480) -> Any:
    node = require("node")
    if not (_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"the Node client's packages are not installed: cd {_CLIENT} && npm ci", False)
    run = subprocess.run(
        [node, str(_CLIENT / "client.js"), server.address, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("node") / "models"
    write_version(root, "1")
    with ServerProcess(root, "--cpus", "1") as running:
        yield running


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _count(server: ServerProcess, code: str, method: str = "GenerateStream") -> float:
    return server.metric(
        "cvae_requests_total", f'code="{code}",method="{method}",protocol="cvae.v1"'
    )


def _error_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.log().splitlines() if " ERROR " in line or "Traceback" in line]


def test_every_rpc_and_encoding_gives_the_python_clients_bytes(server: ServerProcess) -> None:
    seen = _node(server, "rpcs")
    stub = server.stub
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert seen["model_info"]["name"] == info.name
    assert seen["model_info"]["latent_dim"] == info.latent_dim
    assert seen["model_info"]["available_versions"] == list(info.available_versions)
    for name, encoding in pb.Encoding.items():
        expected = stub.Generate(pb.GenerateRequest(labels=[0, 1, 2, 3], seed=7, encoding=encoding))
        got = seen[f"generate_{name}"]
        assert got["images_sha256"] == _sha(expected.images.data), name
        assert got["png_sha256"] == [_sha(png) for png in expected.png], name
        assert got["latents_sha256"] == _sha(expected.latents.data), name
        assert got["shape"] == list(expected.images.shape) and got["seed"] == "7", name
    # The client's own latents, and a stream in chunks.
    dim = info.latent_dim
    latents = np.array([((i % 7) - 3) / 4 for i in range(2 * dim)], "<f4").tobytes()
    given = pb.Tensor(shape=[2, dim], dtype="float32", data=latents)
    expected = stub.Generate(pb.GenerateRequest(labels=[5, 6], latents=given, encoding=pb.FLOAT32))
    assert seen["generate_latents"]["images_sha256"] == _sha(expected.images.data)
    assert seen["generate_latents"]["labels"] == [5, 6]
    assert "seed" not in seen["generate_latents"]  # none: the latents were given
    stream = seen["stream"]
    assert stream["code"] == "OK"
    assert [chunk["offset"] for chunk in stream["chunks"]] == [0, 4, 8]
    request = pb.GenerateRequest(labels=[i % 10 for i in range(10)], seed=7, chunk_size=4)
    expected_chunks = list(stub.GenerateStream(request, timeout=30))
    assert [c["images_sha256"] for c in stream["chunks"]] == [
        _sha(chunk.images.data) for chunk in expected_chunks
    ]
    # Client mistakes.
    assert seen["bad_label"]["code"] == "INVALID_ARGUMENT"
    assert seen["bad_label"]["details"].startswith("labels[0]")
    assert seen["bad_version"]["code"] == "NOT_FOUND"
    assert seen["bad_stream"]["code"] == "INVALID_ARGUMENT"
    with pytest.raises(grpc.RpcError) as raised:
        stub.Generate(pb.GenerateRequest(labels=[1000]), timeout=30)
    assert raised.value.details() == seen["bad_label"]["details"]


def test_cancelled_streams_are_cancelled_on_the_server_and_log_no_error(
    server: ServerProcess,
) -> None:
    before = {code: _count(server, code) for code in ("CANCELLED", "INTERNAL")}
    seen = _node(server, "cancel", str(_RACES))
    assert seen["codes"] == {"CANCELLED": _RACES}
    assert all(chunks >= 1 for chunks in seen["chunks"])  # each was cancelled mid-stream
    server_saw = _settled(server, "CANCELLED", before["CANCELLED"] + _RACES)
    assert server_saw - before["CANCELLED"] == _RACES
    assert _count(server, "INTERNAL") == before["INTERNAL"] == 0
    assert _error_lines(server) == []


def test_deadline_races_are_deadline_exceeded_on_the_server_and_log_no_error(
    server: ServerProcess,
) -> None:
    codes = ("DEADLINE_EXCEEDED", "CANCELLED", "INTERNAL", "OK", "RESOURCE_EXHAUSTED")
    before = {code: _count(server, code) for code in codes}
    seen = _node(server, "deadline", str(_RACES))
    assert sum(seen["codes"].values()) == _RACES
    # The client's deadline passes mid-stream (or earlier, on a loaded machine): never an
    # answer other than the deadline, or a refusal because the deadline was too short.
    assert set(seen["codes"]) <= {"DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
    expired = seen["codes"].get("DEADLINE_EXCEEDED", 0)
    # Streams that delivered a chunk surely reached the server's handler: it counts each.
    started = sum(1 for chunks in seen["chunks"] if chunks >= 1)
    assert started > 0
    _settled(server, "DEADLINE_EXCEEDED", before["DEADLINE_EXCEEDED"] + started)
    delta = {code: _count(server, code) - before[code] for code in codes}
    ended = delta["DEADLINE_EXCEEDED"] + delta["CANCELLED"]
    assert started <= ended <= expired, (delta, seen)
    # A reset within 1 s of the deadline is the client's deadline (service/servicer.py); only
    # intake lagging more than that (a badly overloaded machine) may leave one CANCELLED.
    assert delta["CANCELLED"] <= _RACES // 10, (delta, seen)
    assert delta["INTERNAL"] == delta["OK"] == 0, (delta, seen)
    assert delta["RESOURCE_EXHAUSTED"] == seen["codes"].get("RESOURCE_EXHAUSTED", 0)
    assert _error_lines(server) == []


def _settled(server: ServerProcess, code: str, wanted: float, timeout: float = 30.0) -> float:
    import time

    deadline = time.monotonic() + timeout
    value = _count(server, code)
    while value < wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        value = _count(server, code)
    time.sleep(0.5)  # and nothing more arrives after
    return _count(server, code)
