"""The Open Inference Protocol over gRPC, driven by tritonclient (a client no one here wrote)
against a real `cvae serve` process: health, metadata, inference with and without z, the
images byte-identical to cvae.v1's, errors and deadlines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from cvae.inference import grpc_service_pb2 as oip_pb
from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)
_MODEL = "cvae-mnist"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as connected:
        yield connected


def _labels(values: list[int], datatype: str = "INT64") -> triton.InferInput:
    tensor = triton.InferInput("label", [len(values)], datatype)
    tensor.set_data_from_numpy(
        np.array(values, dtype=np.int64 if datatype == "INT64" else np.int32)
    )
    return tensor


def _z(latents: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("z", list(latents.shape), "FP32")
    tensor.set_data_from_numpy(latents.astype(np.float32))
    return tensor


def _uint8_output() -> triton.InferRequestedOutput:
    output = triton.InferRequestedOutput("image")
    # tritonclient has no public way to set an output's parameters; the protocol has.
    output._output.parameters["datatype"].string_param = "UINT8"
    return output


def _v1_images(server: ServerProcess, request: pb.GenerateRequest) -> bytes:
    return server.stub.Generate(request, timeout=30).images.data


def _error(call: object) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()  # type: ignore[operator]
    return raised.value


def test_liveness_readiness_and_model_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(_MODEL)
    assert client.is_model_ready(_MODEL, "1")
    assert not client.is_model_ready(_MODEL, "7")
    assert not client.is_model_ready("no-such-model")


def test_server_and_model_metadata_state_names_types_shapes_and_metrics(
    client: triton.InferenceServerClient,
) -> None:
    server = client.get_server_metadata()
    assert server.name == "cvae-mnist-service" and server.version
    model = client.get_model_metadata(_MODEL)
    assert (model.name, list(model.versions), model.platform) == (_MODEL, ["1"], "onnxruntime_onnx")
    inputs = [(t.name, t.datatype, list(t.shape)) for t in model.inputs]
    assert inputs == [("label", "INT64", [-1]), ("z", "FP32", [-1, 16])]
    outputs = [(t.name, t.datatype, list(t.shape)) for t in model.outputs]
    assert outputs == [("image", "FP32", [-1, 28, 28])]
    # The model card's metrics: this service's field 6, unknown to tritonclient, kept on the wire.
    ours = oip_pb.ModelMetadataResponse.FromString(model.SerializeToString())
    assert ours.parameters["label_accuracy"].double_param == 0.5
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("no-such-model")
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_infer_gives_cvae_v1s_bytes_for_the_same_labels_seed_and_temperature(
    server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    labels = [0, 3, 9, 4]
    result = client.infer(_MODEL, [_labels(labels)], parameters={"seed": 11, "temperature": 0.7})
    images = result.as_numpy("image")
    assert images.dtype == np.float32 and images.shape == (4, 28, 28)
    v1 = pb.GenerateRequest(labels=labels, seed=11, temperature=0.7, encoding=pb.FLOAT32)
    assert images.tobytes() == _v1_images(server, v1)
    response = result.get_response()
    assert (response.model_name, response.model_version) == (_MODEL, "1")
    assert response.parameters["seed"].int64_param == 11

    as_uint8 = client.infer(
        _MODEL, [_labels(labels, "INT32")], outputs=[_uint8_output()],
        parameters={"seed": 11, "temperature": 0.7},
    ).as_numpy("image")  # fmt: skip
    assert as_uint8.dtype == np.uint8
    v1.encoding = pb.UINT8
    assert as_uint8.tobytes() == _v1_images(server, v1)
    by_request = client.infer(
        _MODEL, [_labels(labels)], parameters={"seed": 11, "temperature": 0.7, "datatype": "UINT8"}
    ).as_numpy("image")
    assert by_request.tobytes() == as_uint8.tobytes()


def test_a_drawn_seed_comes_back_and_replays(client: triton.InferenceServerClient) -> None:
    first = client.infer(_MODEL, [_labels([5, 6])], request_id="r-1")
    response = first.get_response()
    assert response.id == "r-1"
    seed = response.parameters["seed"].int64_param
    replay = client.infer(_MODEL, [_labels([5, 6])], parameters={"seed": seed})
    assert replay.as_numpy("image").tobytes() == first.as_numpy("image").tobytes()


def test_infer_with_z_uses_the_given_latents(
    server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    latents = np.random.default_rng(3).standard_normal((2, 16), dtype=np.float32)
    images = client.infer(_MODEL, [_labels([7, 8]), _z(latents)]).as_numpy("image")
    v1 = pb.GenerateRequest(
        labels=[7, 8],
        latents=pb.Tensor(shape=[2, 16], dtype="float32", data=latents.tobytes()),
        encoding=pb.FLOAT32,
    )
    assert images.tobytes() == _v1_images(server, v1)


def test_an_unknown_model_or_version_is_not_found(client: triton.InferenceServerClient) -> None:
    error = _error(lambda: client.infer("no-such-model", [_labels([1])]))
    assert error.status() == "StatusCode.NOT_FOUND"
    assert "no-such-model" in error.message()
    error = _error(lambda: client.infer(_MODEL, [_labels([1])], model_version="7"))
    assert error.status() == "StatusCode.NOT_FOUND"


def _tensor(name: str, datatype: str, values: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    return tensor


@pytest.mark.parametrize(
    ("inputs", "named"),
    [
        (lambda: [_tensor("label", "INT64", np.array([[1, 2]]))], "label.shape"),
        (lambda: [_tensor("label", "FP32", np.array([1, 2], np.float32))], "label.datatype"),
        (lambda: [_labels([1, 12])], "label[1]"),
        (lambda: [_labels([1, 2]), _z(np.zeros((2, 3)))], "z.shape"),
        (lambda: [_labels([1]), _z(np.full((1, 16), np.nan))], "z:"),
        (lambda: [_labels([1]), _tensor("digits", "INT64", np.array([1]))], "'digits'"),
        (lambda: [_z(np.zeros((1, 16)))], "label is missing"),
    ],
)
def test_a_bad_input_is_invalid_argument_naming_it(
    client: triton.InferenceServerClient, inputs: object, named: str
) -> None:
    error = _error(lambda: client.infer(_MODEL, inputs()))  # type: ignore[operator]
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert named in error.message()


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"seed": -1}, "parameters.seed"),
        ({"temperature": 0.0}, "parameters.temperature"),
        ({"temperature": "hot"}, "parameters.temperature"),
        ({"datatype": "FP16"}, "parameters.datatype"),
    ],
)
def test_a_bad_parameter_is_invalid_argument_naming_it(
    client: triton.InferenceServerClient, parameters: dict[str, object], named: str
) -> None:
    error = _error(lambda: client.infer(_MODEL, [_labels([1])], parameters=parameters))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message().startswith(named)


def test_an_expired_deadline_is_deadline_exceeded(
    server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    error = _error(lambda: client.infer(_MODEL, [_labels([1] * 1024)], client_timeout=0.0001))
    assert error.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert client.is_server_ready()


def test_metrics_count_oip_calls_under_their_protocol(
    server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    before = server.metric(
        "cvae_requests_total", 'code="OK",method="ModelInfer",protocol="oip-grpc"'
    )
    client.infer(_MODEL, [_labels([1])])
    _error(lambda: client.infer(_MODEL, [_labels([99])]))
    after = server.metric(
        "cvae_requests_total", 'code="OK",method="ModelInfer",protocol="oip-grpc"'
    )
    assert after == before + 1
    assert (
        server.metric(
            "cvae_requests_total", 'code="INVALID_ARGUMENT",method="ModelInfer",protocol="oip-grpc"'
        )
        >= 1
    )


def test_oip_and_cvae_v1_share_one_server_port_and_its_health(server: ServerProcess) -> None:
    channel = server.channel()
    method = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
    assert method(b"", timeout=10) == b"\x08\x01"  # ServerLiveResponse(live=true)
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(b"\xff", timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.health() == 1  # SERVING


def test_oip_serves_the_shipped_model_with_cvae_v1s_bytes() -> None:
    repository = Path(__file__).resolve().parents[3] / "models"
    with (
        ServerProcess(repository, "--model-name", _MODEL) as shipped,
        triton.InferenceServerClient(shipped.address) as client,
    ):
        labels = list(range(10))
        loaded = shipped.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).available_versions
        assert len(loaded) == 2  # the newest two shipped versions (--keep-versions)
        for version in loaded:
            images = client.infer(
                _MODEL, [_labels(labels)], model_version=version,
                parameters={"seed": 42, "temperature": 0.9},
            ).as_numpy("image")  # fmt: skip
            v1 = pb.GenerateRequest(
                labels=labels, seed=42, temperature=0.9, encoding=pb.FLOAT32, model_version=version
            )
            assert images.tobytes() == _v1_images(shipped, v1)


def test_oip_calls_merge_with_cvae_v1_calls_into_shared_decoder_batches(
    server: ServerProcess,
) -> None:
    infer = server.channel().unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=oip_pb.ModelInferRequest.SerializeToString,
        response_deserializer=oip_pb.ModelInferResponse.FromString,
    )

    def request(seed: int) -> oip_pb.ModelInferRequest:
        labels = np.array([(seed + k) % 10 for k in range(1 + seed % 3)], dtype=np.int64)
        message = oip_pb.ModelInferRequest(
            model_name=_MODEL,
            inputs=[{"name": "label", "datatype": "INT64", "shape": [len(labels)]}],
            raw_input_contents=[labels.tobytes()],
        )
        message.parameters["seed"].int64_param = seed
        return message

    requests = [request(seed) for seed in range(32)]
    alone = [infer(r, timeout=30).raw_output_contents[0] for r in requests]
    batches_before = server.metric("cvae_batch_size_count")
    big = pb.GenerateRequest(labels=[1] * 1024, omit_latents=True)
    for _ in range(3):
        # The cvae.v1 call keeps the decoder busy; the OIP calls queue behind it and merge.
        ahead = server.stub.Generate.future(big, timeout=60)
        futures = [infer.future(r, timeout=60) for r in requests]
        assert [f.result().raw_output_contents[0] for f in futures] == alone
        assert len(ahead.result().images.data) == 1024 * 784
    batches = server.metric("cvae_batch_size_count") - batches_before
    assert batches < 3 * (8 + len(requests))  # 1024 images are 8 batches; the small ones shared


def test_typed_contents_give_the_same_images_as_raw_contents(server: ServerProcess) -> None:
    infer = server.channel().unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=oip_pb.ModelInferRequest.SerializeToString,
        response_deserializer=oip_pb.ModelInferResponse.FromString,
    )
    latents = np.random.default_rng(5).standard_normal((2, 16), dtype=np.float32)
    typed = oip_pb.ModelInferRequest(
        model_name=_MODEL,
        inputs=[
            {"name": "label", "datatype": "INT32", "shape": [2],
             "contents": {"int_contents": [4, 2]}},
            {"name": "z", "datatype": "FP32", "shape": [2, 16],
             "contents": {"fp32_contents": latents.reshape(-1).tolist()}},
        ],
    )  # fmt: skip
    raw = oip_pb.ModelInferRequest(
        model_name=_MODEL,
        inputs=[
            {"name": "label", "datatype": "INT64", "shape": [2]},
            {"name": "z", "datatype": "FP32", "shape": [2, 16]},
        ],
        raw_input_contents=[np.array([4, 2], np.int64).tobytes(), latents.tobytes()],
    )
    answer = infer(typed, timeout=30)
    assert answer.outputs[0].shape == [2, 28, 28]
    assert answer.raw_output_contents == infer(raw, timeout=30).raw_output_contents
    typed.raw_input_contents.extend([b"", b""])  # both at once: refused, naming the input
    with pytest.raises(grpc.RpcError) as raised:
        infer(typed, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "label" in (raised.value.details() or "")
