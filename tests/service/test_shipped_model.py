"""The shipped model repository (models/, from `make model` and `make model-fast`) serves as the
contract says: each version of each model loads and checks out against its model.json, rows do
not depend on their batch, the server answers with exactly the bytes in-process onnxruntime
computes, and its second model (cvae-mnist-fast) is served beside the default one by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2

from cvae.inference import grpc_service_pb2 as oip
from cvae.inference import grpc_service_pb2_grpc as oip_grpc
from cvae.v1 import generator_pb2 as pb
from modelrepo import ModelRepository, read_spec
from service.codec import to_uint8
from service.options import runtime_options
from service.runtime import load_runtime
from service.sampler import LatentSampler
from service.settings import ServiceSettings
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)
_SHIPPED = Path(__file__).resolve().parents[2] / "models"
DEFAULT = "cvae-mnist"
FAST = "cvae-mnist-fast"


@pytest.fixture(scope="module")
def shipped() -> Iterator[ServerProcess]:
    """`cvae serve` on models/ as `make serve` runs it: cvae-mnist the default."""
    with ServerProcess(_SHIPPED, "--model-name", DEFAULT) as server:
        yield server


def test_the_shipped_repository_holds_the_default_model_and_the_fast_one() -> None:
    assert ModelRepository(_SHIPPED).model_names() == [DEFAULT, FAST]


@pytest.mark.parametrize("name", [DEFAULT, FAST])
def test_every_shipped_version_loads_and_is_batch_invariant(name: str) -> None:
    versions = ModelRepository(_SHIPPED, name).versions()
    assert versions, f"{_SHIPPED / name} holds no model version"
    for folder in versions:
        for threads in (1, 2):
            runtime = load_runtime(
                folder.path, runtime_options(ServiceSettings(intra_op_threads=threads))
            )
            assert runtime.batch_invariant, (folder.path, threads)


@pytest.mark.parametrize("name", ["", FAST])
def test_the_server_answers_the_bytes_onnxruntime_computes(
    shipped: ServerProcess, name: str
) -> None:
    newest = ModelRepository(_SHIPPED, name or DEFAULT).newest()
    spec = read_spec(newest.path)
    session = ort.InferenceSession(str(newest.path / "model.onnx"))
    info = shipped.stub.GetModelInfo(pb.GetModelInfoRequest(model_name=name), timeout=30)
    assert (info.name, info.version) == (name or DEFAULT, newest.version)
    futures = []
    for seed in range(24):
        labels = [(seed + k) % info.num_classes for k in range(1 + seed % 5)]
        request = pb.GenerateRequest(labels=labels, seed=seed, temperature=0.9, model_name=name)
        futures.append((seed, labels, shipped.stub.Generate.future(request, timeout=60)))
    for seed, labels, future in futures:  # sent together: merged by the batcher
        latents = LatentSampler(info.latent_dim, seed, 0.9).take(len(labels))
        feeds = {spec.latent_input: latents, spec.label_input: np.array(labels, np.int64)}
        (images,) = session.run([spec.image_output], feeds)
        answer = future.result()
        assert (answer.model_name, answer.model_version) == (name or DEFAULT, newest.version)
        assert answer.images.data == to_uint8(images).tobytes()


def test_the_fast_model_is_listed_described_and_healthy_beside_the_default(
    shipped: ServerProcess,
) -> None:
    info = shipped.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert (info.name, info.default_model) == (DEFAULT, DEFAULT)
    assert list(info.available_models) == [DEFAULT, FAST]
    fast = shipped.stub.GetModelInfo(pb.GetModelInfoRequest(model_name=FAST), timeout=30)
    spec = read_spec(ModelRepository(_SHIPPED, FAST).newest().path)
    assert (fast.name, list(fast.available_versions)) == (FAST, [spec.version])
    assert (fast.latent_dim, list(fast.image_shape)) == (16, [28, 28])
    # The evaluator's scores travel with the model: model.json, then GetModelInfo.
    assert {metric.name: metric.value for metric in fast.metrics} == pytest.approx(spec.metrics)
    assert {"label_accuracy", "test_negative_elbo"} <= set(spec.metrics)
    images = shipped.stub.Generate(
        pb.GenerateRequest(labels=list(range(10)), seed=3, model_name=FAST), timeout=30
    )
    assert (images.model_name, list(images.images.shape)) == (FAST, [10, 28, 28])
    for service in ("", "cvae.v1.Generator", DEFAULT, FAST):
        assert shipped.health(service) == health_pb2.HealthCheckResponse.SERVING, service


def test_the_open_inference_protocol_describes_and_serves_the_fast_model(
    shipped: ServerProcess,
) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(shipped.channel())
    spec = read_spec(ModelRepository(_SHIPPED, FAST).newest().path)
    metadata = stub.ModelMetadata(oip.ModelMetadataRequest(name=FAST), timeout=10)
    assert (metadata.name, list(metadata.versions)) == (FAST, [spec.version])
    assert {(t.name, t.datatype) for t in metadata.inputs} >= {("label", "INT64"), ("z", "FP32")}
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("image", [-1, 28, 28])]
    parameters = {key: value.double_param for key, value in metadata.parameters.items()}
    assert parameters == pytest.approx(spec.metrics)
    assert stub.ModelReady(oip.ModelReadyRequest(name=FAST), timeout=10).ready
    request = oip.ModelInferRequest(
        model_name=FAST,
        inputs=[oip.ModelInferRequest.InferInputTensor(name="label", datatype="INT64", shape=[3])],
        raw_input_contents=[np.array([7, 8, 9], dtype="<i8").tobytes()],
    )
    request.parameters["seed"].int64_param = 5
    answer = stub.ModelInfer(request, timeout=30)
    assert (answer.model_name, answer.model_version) == (FAST, spec.version)
    v1 = shipped.stub.Generate(
        pb.GenerateRequest(labels=[7, 8, 9], seed=5, model_name=FAST, encoding=pb.FLOAT32),
        timeout=30,
    )
    assert answer.raw_output_contents[0] == v1.images.data
