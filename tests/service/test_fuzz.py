"""Random requests against the real server: every answer is OK or a client-error code whose
message names a field; never INTERNAL or UNKNOWN; the server stays up."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(300)
_CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_FIELDS = ("labels", "latents", "temperature", "encoding", "model_version", "chunk_size")

_tensors = st.builds(
    pb.Tensor,
    shape=st.lists(st.integers(-3, 40), max_size=3),
    dtype=st.sampled_from(["float32", "float64", "uint8", "", "f4"]),
    data=st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"\0" * 64, b"\x00\x00\xc0\x7f" * 16, b"\x00\x00\x80\x7f" * 16]),
    ),
)
_requests = st.builds(
    pb.GenerateRequest,
    labels=st.lists(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 9), max_size=12),
    latents=st.none() | _tensors,
    seed=st.none() | st.integers(0, 2**64 - 1),
    temperature=st.floats(width=32, allow_nan=True, allow_infinity=True),
    encoding=st.integers(-2, 5),
    model_version=st.sampled_from(["", "1", "2", "x", "-1", "01"]),
    chunk_size=st.integers(0, 3000),
    omit_latents=st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=_requests, streaming=st.booleans())
def test_random_requests_get_ok_or_a_named_client_error(
    server: ServerProcess, request: pb.GenerateRequest, streaming: bool
) -> None:
    try:
        if streaming:
            list(server.stub.GenerateStream(request, timeout=30))
        else:
            server.stub.Generate(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in _CLIENT_ERRORS, (error.code(), error.details())
        assert error.details().split(":")[0].split("[")[0].split(".")[0] in _FIELDS, error.details()


def test_the_server_is_still_serving_after_the_fuzzing(server: ServerProcess) -> None:
    assert server.health() == health_pb2.HealthCheckResponse.SERVING
    text = server.scrape()
    failed = [
        line
        for line in text.splitlines()
        if line.startswith("cvae_requests_total{")
        and ('code="INTERNAL"' in line or 'code="UNKNOWN"' in line)
        and not line.endswith(" 0.0")  # every known code is exported at 0 from the start
    ]
    assert failed == []
