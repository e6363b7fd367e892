"""The limits a client can run into: message size (a message just over it is refused, one at it
is read), images per request and per stream, and status messages that stay readable whatever
value the client sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)
_MESSAGE_LIMIT = 64 * 1024
_IMAGES_LIMIT = 50
_STREAM_LIMIT = 300


@pytest.fixture(scope="module")
def limited(repository: Path) -> Iterator[ServerProcess]:
    args = (
        "--max-message-bytes", str(_MESSAGE_LIMIT),
        "--max-images-per-request", str(_IMAGES_LIMIT),
        "--max-images-per-stream", str(_STREAM_LIMIT),
        "--stream-chunk-size", "25",
    )  # fmt: skip
    with ServerProcess(repository, *args, metrics=False) as running:
        yield running


def request_of_size(size: int) -> pb.GenerateRequest:
    """A GenerateRequest whose serialized form is exactly `size` bytes (padding in latents.data)."""
    request = pb.GenerateRequest(labels=[1], latents=pb.Tensor(shape=[1, 16], dtype="float32"))
    padding = size - request.ByteSize()
    while True:  # the length prefix of the bytes field grows with the padding
        request.latents.data = b"\0" * padding
        if request.ByteSize() == size:
            return request
        padding -= request.ByteSize() - size


def _error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value


def test_a_message_at_the_limit_is_read_and_one_byte_over_is_refused(
    limited: ServerProcess,
) -> None:
    stub = limited.stub
    at_limit = request_of_size(_MESSAGE_LIMIT)
    assert at_limit.ByteSize() == _MESSAGE_LIMIT
    # Read and checked: refused for its latents, which proves it passed the size gate.
    error = _error(lambda: stub.Generate(at_limit, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("latents.data: ")

    over = request_of_size(_MESSAGE_LIMIT + 1)
    error = _error(lambda: stub.Generate(over, timeout=30))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()
    assert stub.Generate(pb.GenerateRequest(labels=[2]), timeout=30).images.data
    assert limited.health() == health_pb2.HealthCheckResponse.SERVING


def test_images_per_request_limit_is_enforced_at_its_edge(limited: ServerProcess) -> None:
    stub = limited.stub
    answer = stub.Generate(pb.GenerateRequest(labels=[3] * _IMAGES_LIMIT), timeout=30)
    assert list(answer.images.shape) == [_IMAGES_LIMIT, 28, 28]
    error = _error(
        lambda: stub.Generate(pb.GenerateRequest(labels=[3] * (_IMAGES_LIMIT + 1)), timeout=30)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"labels: {_IMAGES_LIMIT + 1} images asked; at most 50")
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert (info.max_images_per_request, info.max_images_per_stream) == (50, 300)


def test_images_per_stream_limit_is_enforced_at_its_edge(limited: ServerProcess) -> None:
    stub = limited.stub
    chunks = list(stub.GenerateStream(pb.GenerateRequest(labels=[4] * _STREAM_LIMIT), timeout=60))
    assert sum(len(chunk.labels) for chunk in chunks) == _STREAM_LIMIT
    over = pb.GenerateRequest(labels=[4] * (_STREAM_LIMIT + 1))
    error = _error(lambda: list(stub.GenerateStream(over, timeout=30)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"labels: {_STREAM_LIMIT + 1} images asked; at most 300")


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (pb.GenerateRequest(labels=[1], model_version="9" * 20_000), "NOT_FOUND", "model_version"),
        (
            pb.GenerateRequest(labels=[1], latents=pb.Tensor(dtype="f" * 20_000)),
            "INVALID_ARGUMENT",
            "latents.dtype",
        ),
        (
            pb.GenerateRequest(labels=[1], latents=pb.Tensor(shape=[1] * 10_000, dtype="float32")),
            "INVALID_ARGUMENT",
            "latents.shape",
        ),
    ],
)
def test_a_huge_value_is_quoted_short_so_its_status_arrives(
    server: ServerProcess, request_: pb.GenerateRequest, code: str, field: str
) -> None:
    """Found by the fuzz: echoing a 20 kB value made the status exceed HTTP/2's 16 KiB header
    limit, and the client saw RESOURCE_EXHAUSTED "Stream removed" instead of the real error."""
    error = _error(lambda: server.stub.Generate(request_, timeout=30))
    assert (error.code().name, error.details().split(": ")[0]) == (code, field)
    assert len(error.details()) < 500


def test_a_generate_request_sent_to_get_model_info_gets_its_not_found(
    server: ServerProcess,
) -> None:
    """GenerateRequest's packed labels parse as GetModelInfoRequest's model_version string."""
    body = pb.GenerateRequest(labels=[2] * 4096).SerializeToString()
    call = server.channel().unary_unary("/cvae.v1.Generator/GetModelInfo", None, None)
    error = _error(lambda: call(body, timeout=30))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith("model_version: '\\x02\\x02")


def test_refused_huge_requests_do_not_pile_up_in_memory(server: ServerProcess) -> None:
    """Each refused 2M-label stream request used to stay in memory (~33 MB each) in a reference
    cycle through context.abort()'s AbortError, until a full garbage collection that such
    requests do not trigger: ten of them grew the server by ~330 MB."""
    from tests.reliability.memory import resident_mib

    assert server.process is not None
    request = pb.GenerateRequest(labels=[3] * 2_000_000, temperature=-1.0)

    def refuse() -> None:
        error = _error(lambda: list(server.stub.GenerateStream(request, timeout=60)))
        assert error.details().startswith("temperature: -1")

    refuse()  # the high-water mark of one such request
    before = resident_mib(server.process.pid)
    for _ in range(10):
        refuse()
    after = resident_mib(server.process.pid)
    assert after <= before + 64.0, (before, after)


def test_a_response_over_the_message_limit_is_refused_before_the_work(
    limited: ServerProcess,
) -> None:
    """50 float32 images with latents (~160 kB) cannot be sent under a 64 KiB limit: gRPC would
    fail the send at the client while the server counted OK. Refused up front and named;
    UINT8 images without latents (~39 kB) fit."""
    stub = limited.stub
    big = pb.GenerateRequest(labels=[1] * _IMAGES_LIMIT, encoding=pb.FLOAT32)
    error = _error(lambda: stub.Generate(big, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over the server's --max-message-bytes (65,536)" in error.details()
    stream = pb.GenerateRequest(labels=[1] * 100, encoding=pb.FLOAT32, chunk_size=50)
    error = _error(lambda: list(stub.GenerateStream(stream, timeout=30)))
    assert error.details().startswith("chunk_size: the response would be")
    small = pb.GenerateRequest(labels=[1] * _IMAGES_LIMIT, omit_latents=True)
    assert len(stub.Generate(small, timeout=30).images.data) == _IMAGES_LIMIT * 28 * 28
    assert "over --max-message-bytes 65536" in limited.log()  # said at start
