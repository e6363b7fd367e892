"""The Open Inference Protocol over HTTP/JSON, driven by tritonclient.http (binary tensors, its
default) and by plain JSON requests, against a real `cvae serve --http-port` process."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess, free_port, run_serve

pytestmark = pytest.mark.timeout(180)
_MODEL = "cvae-mnist"


@pytest.fixture(scope="module")
def http_server(shared_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(shared_repo, "--http-port", str(free_port())) as running:
        yield running


def _http_port(server: ServerProcess) -> int:
    return int(server.args[server.args.index("--http-port") + 1])


@pytest.fixture(scope="module")
def client(http_server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    connected = triton.InferenceServerClient(f"127.0.0.1:{_http_port(http_server)}")
    yield connected
    connected.close()


def _call(server: ServerProcess, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{_http_port(server)}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _labels(values: list[int], binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("label", [len(values)], "INT64")
    tensor.set_data_from_numpy(np.array(values, dtype=np.int64), binary_data=binary)
    return tensor


def _v1(server: ServerProcess, **fields: Any) -> bytes:
    return server.stub.Generate(pb.GenerateRequest(**fields), timeout=30).images.data


def test_health_and_metadata_over_http(
    http_server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(_MODEL) and client.is_model_ready(_MODEL, "1")
    assert not client.is_model_ready(_MODEL, "7") and not client.is_model_ready("nope")
    assert client.get_server_metadata()["name"] == "cvae-mnist-service"
    metadata = client.get_model_metadata(_MODEL)
    assert metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "z", "datatype": "FP32", "shape": [-1, 16]},
    ]
    assert metadata["outputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert metadata["parameters"] == {"label_accuracy": 0.5}
    assert _call(http_server, "/v2/models/cvae-mnist/versions/1")[1]["name"] == _MODEL
    status, body = _call(http_server, "/v2/models/nope")
    assert status == 404 and "nope" in body["error"]


def test_binary_infer_gives_cvae_v1s_bytes(
    http_server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    labels = [0, 3, 9, 4]
    result = client.infer(_MODEL, [_labels(labels)], parameters={"seed": 11, "temperature": 0.7})
    images = result.as_numpy("image")
    assert images.dtype == np.float32 and images.shape == (4, 28, 28)
    v1 = _v1(http_server, labels=labels, seed=11, temperature=0.7, encoding=pb.FLOAT32)
    assert images.tobytes() == v1
    assert result.get_response()["parameters"] == {"seed": 11}

    uint8 = client.infer(
        _MODEL, [_labels(labels, binary=False)],
        parameters={"seed": 11, "temperature": 0.7, "datatype": "UINT8"},
    ).as_numpy("image")  # fmt: skip
    v1 = _v1(http_server, labels=labels, seed=11, temperature=0.7, encoding=pb.UINT8)
    assert uint8.dtype == np.uint8 and uint8.tobytes() == v1


def test_json_infer_with_z_matches_cvae_v1(http_server: ServerProcess) -> None:
    latents = np.random.default_rng(3).standard_normal((2, 16), dtype=np.float32)
    body = {
        "id": "j-1",
        "inputs": [
            {"name": "label", "datatype": "INT32", "shape": [2], "data": [7, 8]},
            {"name": "z", "datatype": "FP32", "shape": [2, 16], "data": latents.tolist()},
        ],
        "outputs": [{"name": "image", "parameters": {"datatype": "UINT8"}}],
    }
    status, answer = _call(http_server, "/v2/models/cvae-mnist/infer", body)
    assert status == 200 and answer["id"] == "j-1" and answer["model_version"] == "1"
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("image", "UINT8", [2, 28, 28])
    tensor = pb.Tensor(shape=[2, 16], dtype="float32", data=latents.tobytes())
    v1 = _v1(http_server, labels=[7, 8], latents=tensor, encoding=pb.UINT8)
    assert bytes(output["data"]) == v1


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"inputs": [{"name": "label", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]},
         400, "label.shape"),
        ({"inputs": [{"name": "label", "datatype": "FP32", "shape": [1], "data": [1.5]}]},
         400, "label.datatype"),
        ({"inputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [1.5]}]},
         400, "'label'.data"),
        ({"inputs": [{"name": "label", "datatype": "INT64", "shape": [2], "data": [1]}]},
         400, "label: 1 values"),
        ({"inputs": []}, 400, "inputs: label is missing"),
        ({"inputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}],
          "parameters": {"temperature": 11}}, 400, "parameters.temperature"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_naming_the_input(
    http_server: ServerProcess, body: dict[str, Any], status: int, named: str
) -> None:
    got, answer = _call(http_server, "/v2/models/cvae-mnist/infer", body)
    assert got == status
    assert answer["error"].startswith(named)


def test_unknown_models_and_versions_are_404(client: triton.InferenceServerClient) -> None:
    for name, version in (("nope", ""), (_MODEL, "7")):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(name, [_labels([1])], model_version=version)
        assert raised.value.status() == "404"


def test_a_passed_timeout_is_504_and_the_server_stays_ready(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(_MODEL, [_labels([1] * 1024)], timeout=1)  # 1 microsecond
    assert raised.value.status() == "504"
    assert client.is_server_ready()


def test_http_calls_are_counted_under_their_protocol(
    http_server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    labels = 'code="OK",method="ModelInfer",protocol="oip-http"'
    before = http_server.metric("cvae_requests_total", labels)
    client.infer(_MODEL, [_labels([1])])
    assert http_server.metric("cvae_requests_total", labels) == before + 1


def test_a_busy_http_port_fails_the_start_with_one_line(shared_repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(shared_repo, "--http-port", str(port))
    assert result.returncode == 1
    assert f"cvae serve: --http-port {port}: cannot listen" in result.stderr


def test_workers_share_the_http_port(shared_repo: Path) -> None:
    with ServerProcess(
        shared_repo, "--workers", "2", "--http-port", str(free_port()), "--intra-op-threads", "1"
    ) as workers:
        body = {"inputs": [{"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 2]}]}
        for _ in range(4):  # new connections, spread over the workers by the kernel
            status, answer = _call(workers, "/v2/models/cvae-mnist/infer", body)
            assert status == 200 and answer["outputs"][0]["shape"] == [2, 28, 28]
        assert _call(workers, "/v2/health/ready") == (200, {"ready": True})


def test_a_body_over_the_message_limit_is_413_and_counted_as_refused(
    http_server: ServerProcess,
) -> None:
    labels = 'code="RESOURCE_EXHAUSTED",method="ModelInfer",protocol="oip-http"'
    before = http_server.metric("cvae_requests_total", labels)
    status, answer = _call(http_server, "/v2/models/cvae-mnist/infer", {"pad": "x" * (17 << 20)})
    assert status == 413 and answer["error"].startswith("request:")
    assert http_server.metric("cvae_requests_total", labels) == before + 1
