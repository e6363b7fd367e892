"""End to end against a real `cvae serve` process: each RPC, each error code, health, reflection,
metrics, determinism while batching, stream flow control and cancellation."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from PIL import Image

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)


def _images(response: pb.GenerateResponse) -> np.ndarray:
    dtype = {"uint8": np.uint8, "float32": np.dtype("<f4")}[response.images.dtype]
    return np.frombuffer(response.images.data, dtype=dtype).reshape(tuple(response.images.shape))


def _latents(response: pb.GenerateResponse) -> np.ndarray:
    return np.frombuffer(response.latents.data, "<f4").reshape(tuple(response.latents.shape))


def test_generate_returns_images_latents_seed_and_version(server: ServerProcess) -> None:
    response = server.stub.Generate(pb.GenerateRequest(labels=[0, 3, 9], seed=11), timeout=30)
    images = _images(response)
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert _latents(response).shape == (3, 16)
    assert list(response.labels) == [0, 3, 9]
    assert response.HasField("seed") and response.seed == 11
    assert (response.model_name, response.model_version, response.offset) == ("cvae-mnist", "1", 0)


def test_same_seed_same_bytes_and_a_drawn_seed_replays(server: ServerProcess) -> None:
    request = pb.GenerateRequest(labels=[1, 2, 3, 4], seed=2**64 - 1, temperature=0.8)
    first = server.stub.Generate(request, timeout=30)
    second = server.stub.Generate(request, timeout=30)
    assert first.images.data == second.images.data and first.latents.data == second.latents.data
    drawn = server.stub.Generate(pb.GenerateRequest(labels=[5, 6]), timeout=30)
    assert drawn.HasField("seed")
    replay = server.stub.Generate(pb.GenerateRequest(labels=[5, 6], seed=drawn.seed), timeout=30)
    assert replay.images.data == drawn.images.data


def test_given_latents_are_used_as_they_are(server: ServerProcess) -> None:
    seeded = server.stub.Generate(pb.GenerateRequest(labels=[7, 8], seed=3), timeout=30)
    given = server.stub.Generate(
        pb.GenerateRequest(labels=[7, 8], latents=seeded.latents, seed=999), timeout=30
    )
    assert given.images.data == seeded.images.data
    assert given.latents.data == seeded.latents.data
    assert not given.HasField("seed")  # the latents came from the caller, not from a seed


def test_encodings_agree(server: ServerProcess) -> None:
    def ask(encoding: int) -> pb.GenerateResponse:
        request = pb.GenerateRequest(labels=[4, 2], seed=5, encoding=encoding, omit_latents=True)
        return server.stub.Generate(request, timeout=30)

    as_float = _images(ask(pb.FLOAT32))
    as_uint8 = _images(ask(pb.UINT8))
    as_png = ask(pb.PNG)
    assert as_float.dtype == np.float32 and as_float.min() >= 0.0 and as_float.max() <= 1.0
    np.testing.assert_array_equal(as_uint8, np.rint(as_float * 255).astype(np.uint8))
    assert _images(ask(pb.ENCODING_UNSPECIFIED)).tobytes() == as_uint8.tobytes()
    assert len(as_png.png) == 2 and not as_png.images.data and not as_png.latents.data
    for png, expected in zip(as_png.png, as_uint8, strict=True):
        np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(png))), expected)


def test_stream_sends_ordered_chunks_equal_to_generate(server: ServerProcess) -> None:
    labels = [i % 10 for i in range(1000)]
    request = pb.GenerateRequest(labels=labels, seed=21, chunk_size=300)
    chunks = list(server.stub.GenerateStream(request, timeout=60))
    assert [c.offset for c in chunks] == [0, 300, 600, 900]
    assert [len(c.labels) for c in chunks] == [300, 300, 300, 100]
    streamed = b"".join(c.images.data for c in chunks)
    whole = server.stub.Generate(pb.GenerateRequest(labels=labels, seed=21), timeout=60)
    assert streamed == whole.images.data
    assert b"".join(c.latents.data for c in chunks) == whole.latents.data
    assert all(c.seed == 21 for c in chunks)


def test_get_model_info_describes_the_model(server: ServerProcess) -> None:
    info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert (info.name, info.version) == ("cvae-mnist", "1")
    assert (info.num_classes, info.latent_dim) == (10, 16)
    assert list(info.image_shape) == [28, 28]
    assert list(info.class_names) == [str(i) for i in range(10)]
    assert info.max_images_per_request == 1024
    assert info.max_images_per_stream == 2_000_000
    assert {m.name: m.value for m in info.metrics} == {"label_accuracy": 0.5}
    assert list(info.available_versions) == ["1"]


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"labels": []}, grpc.StatusCode.INVALID_ARGUMENT, "labels: must hold at least one"),
        ({"labels": [10]}, grpc.StatusCode.INVALID_ARGUMENT, "labels[0]: 10 is outside [0, 10)"),
        ({"labels": [1] * 1025}, grpc.StatusCode.INVALID_ARGUMENT, "at most 1024"),
        (
            {"labels": [1], "latents": pb.Tensor(shape=[1, 3], dtype="float32", data=b"\0" * 12)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "latents.shape: [1, 3] must be [len(labels), latent_dim] = [1, 16]",
        ),
        (
            {"labels": [1], "temperature": float("nan")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "temperature: nan must be finite and in [0, 10]",
        ),
        (
            {"labels": [1], "model_version": "7"},
            grpc.StatusCode.NOT_FOUND,
            "model_version: '7' is not loaded; loaded versions: 1",
        ),
    ],
)
def test_client_mistakes_get_their_code_and_name_the_field(
    server: ServerProcess, fields: dict[str, object], code: grpc.StatusCode, message: str
) -> None:
    request = pb.GenerateRequest(**fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as raised:
        server.stub.Generate(request, timeout=30)
    assert raised.value.code() == code
    assert message in raised.value.details()
    if len(request.labels) <= 1024:  # streams allow more images; otherwise the same checks
        with pytest.raises(grpc.RpcError) as raised:
            list(server.stub.GenerateStream(request, timeout=30))
        assert raised.value.code() == code
        assert message in raised.value.details()


def test_stream_chunk_size_over_the_limit_is_invalid(server: ServerProcess) -> None:
    request = pb.GenerateRequest(labels=[1], chunk_size=5000)
    with pytest.raises(grpc.RpcError) as raised:
        list(server.stub.GenerateStream(request, timeout=30))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk_size: 5000 must be in [0, 1024]" in raised.value.details()


def test_unknown_version_in_model_info_is_not_found(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        server.stub.GetModelInfo(pb.GetModelInfoRequest(model_version="2"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model_version: '2'" in raised.value.details()


def test_an_oversized_message_is_refused_and_the_server_stays_up(server: ServerProcess) -> None:
    latents = pb.Tensor(shape=[1, 16], dtype="float32", data=b"\0" * (17 << 20))
    with pytest.raises(grpc.RpcError) as raised:
        server.stub.Generate(pb.GenerateRequest(labels=[1], latents=latents), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.stub.Generate(pb.GenerateRequest(labels=[1]), timeout=30).images.data


def test_an_expired_deadline_is_deadline_exceeded(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        server.stub.Generate(pb.GenerateRequest(labels=[1] * 1024), timeout=0.0001)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert server.health() == health_pb2.HealthCheckResponse.SERVING


def test_health_serves_both_names_and_reflection_lists_the_service(server: ServerProcess) -> None:
    assert server.health("") == health_pb2.HealthCheckResponse.SERVING
    assert server.health("cvae.v1.Generator") == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as raised:
        server.health("no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    services = ProtoReflectionDescriptorDatabase(server.channel()).get_services()
    assert "cvae.v1.Generator" in services and "grpc.health.v1.Health" in services


def test_health_list_gives_every_status_and_logs_no_error(server: ServerProcess) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel())
    for _ in range(20):  # a client calling it in a loop must not fill the log
        listed = stub.List(health_pb2.HealthListRequest(), timeout=10)
        statuses = {name: answer.status for name, answer in listed.statuses.items()}
        assert statuses == {  # the server, its service, and each model by name
            "": health_pb2.HealthCheckResponse.SERVING,
            "cvae.v1.Generator": health_pb2.HealthCheckResponse.SERVING,
            "cvae-mnist": health_pb2.HealthCheckResponse.SERVING,
        }
    assert " ERROR " not in server.log() and "Traceback" not in server.log()


def test_concurrent_requests_are_batched_and_stay_byte_identical(server: ServerProcess) -> None:
    requests = [
        pb.GenerateRequest(labels=[(seed + k) % 10 for k in range(1 + seed % 3)], seed=seed)
        for seed in range(48)
    ]
    alone = [server.stub.Generate(request, timeout=30).images.data for request in requests]
    batches_before = server.metric("cvae_batch_size_count")
    images_before = server.metric("cvae_batch_size_sum")
    big = pb.GenerateRequest(labels=[1] * 1024, omit_latents=True)
    for _ in range(3):
        # The big request keeps the decoder busy, so the small ones queue up and get merged.
        ahead = server.stub.Generate.future(big, timeout=60)
        futures = [server.stub.Generate.future(request, timeout=60) for request in requests]
        merged = [future.result().images.data for future in futures]
        assert merged == alone
        assert len(ahead.result().images.data) == 1024 * 784
    batches = server.metric("cvae_batch_size_count") - batches_before
    images = server.metric("cvae_batch_size_sum") - images_before
    assert images == 3 * (1024 + sum(len(r.labels) for r in requests))
    assert batches < 3 * (4 + len(requests))  # small requests shared decoder calls


def test_metrics_scrape_shows_every_metric(server: ServerProcess) -> None:
    server.stub.Generate(pb.GenerateRequest(labels=[1, 2]), timeout=30)
    with pytest.raises(grpc.RpcError):
        server.stub.Generate(pb.GenerateRequest(labels=[99]), timeout=30)
    text = server.scrape()
    for needle in (
        'cvae_requests_total{code="OK",method="Generate",protocol="cvae.v1"}',
        'cvae_requests_total{code="INVALID_ARGUMENT",method="Generate",protocol="cvae.v1"}',
        'cvae_request_duration_seconds_bucket{le="0.001",method="Generate",protocol="cvae.v1"}',
        "cvae_queue_duration_seconds_bucket{",
        "cvae_inference_duration_seconds_bucket{",
        'cvae_batch_size_bucket{le="1.0"}',
        "cvae_images_generated_total ",
        "cvae_queue_depth 0.0",
        "cvae_requests_in_flight 0.0",
        'cvae_model_info{name="cvae-mnist",version="1"} 1.0',
        'cvae_model_reloads_total{outcome="loaded"} 1.0',
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "python_gc_collections_total{",
    ):
        assert needle in text, needle
    assert server.metric("cvae_images_generated_total") >= 2


def test_cancelled_stream_stops_generating(server: ServerProcess) -> None:
    request = pb.GenerateRequest(labels=[3] * 2_000_000, chunk_size=256, omit_latents=True)
    call = server.stub.GenerateStream(request, timeout=120)
    for _, chunk in zip(range(3), call, strict=False):
        assert len(chunk.labels) == 256
    call.cancel()
    time.sleep(0.5)
    settled = server.metric("cvae_images_generated_total")
    time.sleep(0.5)
    assert server.metric("cvae_images_generated_total") == settled
    assert settled < 100_000  # far from the 2,000,000 asked for
    assert server.metric("cvae_queue_depth") == 0


def test_calls_in_flight_are_counted_while_they_run(server: ServerProcess) -> None:
    """The autoscaler's saturation gauge: an open stream is one call in flight, until it ends."""
    assert server.metric("cvae_requests_in_flight") == 0
    request = pb.GenerateRequest(labels=[4] * 400_000, chunk_size=256, omit_latents=True)
    call = server.stub.GenerateStream(request, timeout=120)
    next(call)
    assert server.metric("cvae_requests_in_flight") == 1
    call.cancel()
    deadline = time.monotonic() + 10
    while server.metric("cvae_requests_in_flight") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.metric("cvae_requests_in_flight") == 0


def test_a_slow_stream_reader_holds_the_server_back(server: ServerProcess) -> None:
    """Flow control: the server computes ahead of a slow reader by a bounded amount only."""
    request = pb.GenerateRequest(labels=[5] * 400_000, chunk_size=256, omit_latents=True)
    before = server.metric("cvae_images_generated_total")
    rss_before = server.metric("process_resident_memory_bytes")
    call = server.stub.GenerateStream(request, timeout=120)
    next(call)
    time.sleep(2.0)  # the reader stalls; the server may only fill the transport windows
    sent = server.metric("cvae_images_generated_total") - before
    rss_growth = server.metric("process_resident_memory_bytes") - rss_before
    call.cancel()
    assert sent < 100_000, sent  # 400,000 asked; uint8 images are 784 bytes each
    assert rss_growth < 100 << 20, rss_growth


def test_many_threads_many_requests_all_succeed(server: ServerProcess) -> None:
    def one(seed: int) -> int:
        request = pb.GenerateRequest(labels=[seed % 10], seed=seed, omit_latents=True)
        return len(server.stub.Generate(request, timeout=30).images.data)

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, range(400))) == {784}


@pytest.mark.parametrize(
    ("method", "message_type"),
    [
        ("Generate", "cvae.v1.GenerateRequest"),
        ("GenerateStream", "cvae.v1.GenerateRequest"),
        ("GetModelInfo", "cvae.v1.GetModelInfoRequest"),
    ],
)
def test_garbage_bytes_are_invalid_argument(
    server: ServerProcess, method: str, message_type: str
) -> None:
    path = f"/cvae.v1.Generator/{method}"
    channel = server.channel()
    for body in (b"\xff\xff\xff", b"\x0a\x05\x01", bytes(range(256))):
        with pytest.raises(grpc.RpcError) as raised:
            if method == "GenerateStream":
                list(channel.unary_stream(path)(body, timeout=10))
            else:
                channel.unary_unary(path)(body, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"request: not a valid {message_type} message" in raised.value.details()
    assert server.health() == health_pb2.HealthCheckResponse.SERVING


def test_stream_with_given_latents_uses_them_chunk_by_chunk(server: ServerProcess) -> None:
    labels = [i % 10 for i in range(50)]
    seeded = server.stub.Generate(pb.GenerateRequest(labels=labels, seed=8), timeout=30)
    request = pb.GenerateRequest(labels=labels, latents=seeded.latents, chunk_size=16)
    chunks = list(server.stub.GenerateStream(request, timeout=30))
    assert [len(c.labels) for c in chunks] == [16, 16, 16, 2]
    assert b"".join(c.images.data for c in chunks) == seeded.images.data
    assert b"".join(c.latents.data for c in chunks) == seeded.latents.data
    assert not any(c.HasField("seed") for c in chunks)


def test_error_details_stay_short_whatever_the_input(server: ServerProcess) -> None:
    huge = "9" * 50_000
    for request in (
        pb.GenerateRequest(labels=[1], model_version=huge),
        pb.GenerateRequest(labels=[1], latents=pb.Tensor(shape=[1, 16], dtype=huge)),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            server.stub.Generate(request, timeout=30)
        assert raised.value.code() in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
        ), raised.value.details()
        assert len(raised.value.details()) < 300
        assert "(50002 characters)" in raised.value.details()
