"""Several models in one repository: each with its own versions, reload, health and metrics;
an empty model name means the default model (--model-name)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from cvae.client import AsyncClient, Client
from cvae.inference import grpc_service_pb2 as oip
from cvae.inference import grpc_service_pb2_grpc as oip_grpc
from cvae.v1 import generator_pb2 as pb
from tests.service.modelrepo import DecoderSpec, write_version
from tests.service.serverproc import ServerProcess

_FAST = DecoderSpec(latent_dim=4, hidden=16, seed=3)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two") / "models"
    write_version(root, "1")
    write_version(root, "2")
    write_version(root, "1", name="cvae-fast", spec=_FAST)
    return root


@pytest.fixture(scope="module")
def server(two_models: Path) -> Iterator[ServerProcess]:
    with ServerProcess(two_models, "--model-name", "cvae-mnist") as running:
        yield running


def _generate(server: ServerProcess, **fields: object) -> pb.GenerateResponse:
    request = pb.GenerateRequest(labels=[3, 4], seed=7, **fields)  # type: ignore[arg-type]
    return server.stub.Generate(request, timeout=30)


def test_a_call_that_names_no_model_gets_the_default_and_another_name_gets_that_model(
    server: ServerProcess,
) -> None:
    default = _generate(server)
    assert (default.model_name, default.model_version) == ("cvae-mnist", "2")
    assert list(default.latents.shape) == [2, 16]
    fast = _generate(server, model_name="cvae-fast")
    assert (fast.model_name, fast.model_version) == ("cvae-fast", "1")
    assert list(fast.latents.shape) == [2, _FAST.latent_dim]
    pinned = _generate(server, model_name="cvae-mnist", model_version="1")
    assert (pinned.model_name, pinned.model_version) == ("cvae-mnist", "1")


def test_model_info_lists_the_models_and_describes_the_named_one(server: ServerProcess) -> None:
    info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert (info.name, list(info.available_versions)) == ("cvae-mnist", ["2", "1"])
    assert list(info.available_models) == ["cvae-fast", "cvae-mnist"]
    assert info.default_model == "cvae-mnist"
    fast = server.stub.GetModelInfo(pb.GetModelInfoRequest(model_name="cvae-fast"), timeout=10)
    assert (fast.name, fast.latent_dim, list(fast.available_versions)) == ("cvae-fast", 4, ["1"])


def test_an_unknown_model_is_not_found_naming_the_served_ones(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _generate(server, model_name="cvae-nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "cvae-fast, cvae-mnist" in (raised.value.details() or "")


def test_health_answers_for_each_model_name(server: ServerProcess) -> None:
    for name in ("", "cvae.v1.Generator", "cvae-mnist", "cvae-fast"):
        assert server.health(name) == health_pb2.HealthCheckResponse.SERVING, name


def test_the_open_inference_protocol_serves_each_model_by_name(server: ServerProcess) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(server.channel())
    metadata = stub.ModelMetadata(oip.ModelMetadataRequest(name="cvae-fast"), timeout=10)
    assert (metadata.name, list(metadata.versions)) == ("cvae-fast", ["1"])
    request = oip.ModelInferRequest(
        model_name="cvae-fast",
        inputs=[oip.ModelInferRequest.InferInputTensor(name="label", datatype="INT32", shape=[2])],
        raw_input_contents=[np.array([3, 4], dtype="<i4").tobytes()],
    )
    request.parameters["seed"].int64_param = 7
    answer = stub.ModelInfer(request, timeout=30)
    assert answer.model_name == "cvae-fast"
    over_v1 = _generate(server, model_name="cvae-fast", encoding=pb.FLOAT32)
    assert answer.raw_output_contents[0] == over_v1.images.data


def test_metrics_show_what_each_model_serves(server: ServerProcess) -> None:
    assert server.metric("cvae_served_model_info", 'name="cvae-mnist",version="2"') == 1
    assert server.metric("cvae_served_model_info", 'name="cvae-fast",version="1"') == 1
    assert server.metric("cvae_model_info", 'name="cvae-mnist",version="1"') == 1


def test_each_model_reloads_on_its_own(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    write_version(root, "1", name="cvae-fast", spec=_FAST)
    with ServerProcess(root, "--model-name", "cvae-mnist", "--reload-interval-s", "0.2") as server:
        write_version(root, "2", name="cvae-fast", spec=_FAST)
        deadline = time.monotonic() + 60
        while _generate(server, model_name="cvae-fast").model_version != "2":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert _generate(server).model_version == "1"
        assert server.metric("cvae_served_model_info", 'name="cvae-fast",version="2"') == 1
        assert server.metric("cvae_served_model_info", 'name="cvae-mnist",version="1"') == 1


def test_a_model_whose_versions_all_fail_is_refused_alone(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    write_version(root, "1", name="cvae-broken", breakage="truncated_onnx")
    with ServerProcess(root, "--model-name", "cvae-mnist") as server:
        assert _generate(server).model_name == "cvae-mnist"
        with pytest.raises(grpc.RpcError) as raised:
            _generate(server, model_name="cvae-broken")
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.metric("cvae_model_refused_info", 'name="cvae-broken",version="1"') == 1
        assert "model cvae-broken is not served" in server.log()


def test_several_models_and_no_default_is_one_line_at_start_up(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_version(root, "1")
    write_version(root, "1", name="cvae-fast", spec=_FAST)
    completed = subprocess.run(
        [sys.executable, "-m", "cvae", "serve", "--model-repository", str(root), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode != 0
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr
    assert "several models (cvae-fast, cvae-mnist)" in lines[0]
    assert "--model-name" in lines[0]


def test_the_client_names_its_model_on_every_call(server: ServerProcess) -> None:
    with Client(server.address, model="cvae-fast") as client:
        result = client.generate([1, 2], seed=5)
        assert (result.model_name, result.latents.shape) == ("cvae-fast", (2, _FAST.latent_dim))
        streamed = list(client.stream([1, 2, 3], seed=5, chunk_size=2))
        assert {part.model_name for part in streamed} == {"cvae-fast"}
        info = client.model_info()
        assert (info.name, info.available_models, info.default_model) == (
            "cvae-fast",
            ("cvae-fast", "cvae-mnist"),
            "cvae-mnist",
        )
    with Client(server.address) as client:
        assert client.generate([1]).model_name == "cvae-mnist"


def test_the_asyncio_client_names_its_model_too(server: ServerProcess) -> None:
    async def run() -> str:
        async with AsyncClient(server.address, model="cvae-fast") as client:
            return (await client.generate([1])).model_name

    assert asyncio.run(run()) == "cvae-fast"
