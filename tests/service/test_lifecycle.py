"""The server's life: start failures, JSON logs, SIGTERM drain, SIGINT, health on the way down."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess, run_serve

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(
    ("breakage", "file_name", "problem"),
    [
        ("sha_mismatch", "model.onnx", "does not match onnx_sha256"),
        ("bad_json", "model.json", "not valid JSON"),
        ("truncated_onnx", "model.onnx", "onnxruntime cannot load it"),
        ("wrong_input_names", "model.onnx", "graph inputs"),
    ],
)
def test_corrupt_repository_exits_non_zero_with_one_clear_line(
    tmp_path: Path, breakage: str, file_name: str, problem: str
) -> None:
    folder = write_version(tmp_path, "1", breakage=breakage)
    result = run_serve(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cvae serve: ")
    assert str(folder / file_name) in lines[0] and problem in lines[0]


def test_missing_repository_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    result = run_serve(tmp_path / "absent")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"cvae serve: {tmp_path / 'absent'}: model repository folder does not exist"
    )


def test_bad_setting_exits_2_naming_it(model_repo: Path) -> None:
    result = run_serve(model_repo, "--max-batch", "0")
    assert result.returncode == 2
    assert "--max-batch (CVAE_MAX_BATCH): 0 is outside [1, 65536]" in result.stderr


def test_busy_port_exits_non_zero_naming_the_port(model_repo: Path) -> None:
    with ServerProcess(model_repo, metrics=False) as running:
        result = run_serve(model_repo, "--port", str(running.port))
    assert result.returncode == 1
    assert f"--port {running.port}: cannot listen" in result.stderr


def test_json_logs_and_sigint_exit_zero(model_repo: Path) -> None:
    server = ServerProcess(model_repo, "--log-format", "json", metrics=False).start()
    try:
        server.stub.Generate(pb.GenerateRequest(labels=[1]), timeout=30)
        server.signal(signal.SIGINT)
        assert server.wait(30) == 0
        records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
        messages = [record["message"] for record in records]
        assert any(message.startswith("SERVING cvae-mnist version 1") for message in messages)
        assert {"time", "level", "logger", "message"} <= set(records[0])
    finally:
        server.stop()


def test_sigterm_turns_health_not_serving_and_drains_accepted_work(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    server = ServerProcess(tmp_path, "--grace-period-s", "60").start()
    try:
        health = health_pb2_grpc.HealthStub(server.channel())
        watch = health.Watch(health_pb2.HealthCheckRequest(service="cvae.v1.Generator"))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

        # In flight when the signal comes: a stream whose reader is slow, and big requests.
        chunks = 24
        stream = server.stub.GenerateStream(
            pb.GenerateRequest(labels=[7] * (256 * chunks), seed=1, chunk_size=256), timeout=120
        )
        first = next(stream)
        pending = [
            server.stub.Generate.future(pb.GenerateRequest(labels=[2] * 1024), timeout=120)
            for _ in range(4)
        ]
        time.sleep(0.3)  # the server has received them
        server.signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING

        time.sleep(0.5)
        refused = pb_grpc.GeneratorStub(server.new_channel())
        with pytest.raises(grpc.RpcError) as raised:
            refused.Generate(pb.GenerateRequest(labels=[1]), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

        rest = []
        for chunk in stream:  # slowly: the server keeps draining meanwhile
            rest.append(chunk)
            time.sleep(0.02)
        assert [c.offset for c in [first, *rest]] == [256 * i for i in range(chunks)]
        assert all(len(f.result().images.data) == 1024 * 784 for f in pending)
        assert server.wait(60) == 0
        assert "stopped" in server.log()
    finally:
        server.stop()


def test_connection_aging_never_cuts_a_running_stream(model_repo: Path) -> None:
    args = ("--max-connection-age-s", "0.3", "--grace-period-s", "0.2")
    with ServerProcess(model_repo, *args, metrics=False) as server:
        chunks = 150  # 30 MB: far more than the transport buffers, so the reader sets the pace
        request = pb.GenerateRequest(labels=[4] * (256 * chunks), chunk_size=256, omit_latents=True)
        received = []
        started = time.monotonic()
        for chunk in server.stub.GenerateStream(request, timeout=60):
            received.append(chunk.offset)
            time.sleep(0.01)
        assert received == [256 * i for i in range(chunks)]
        assert time.monotonic() - started > 1.0  # outlived the connection age several times
        for _ in range(5):  # later calls go over fresh connections
            assert server.stub.Generate(pb.GenerateRequest(labels=[1]), timeout=30).images.data
            time.sleep(0.1)
