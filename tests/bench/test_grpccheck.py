"""bench/grpccheck.py: grpc-status from trailers and call counts from Prometheus text."""

from __future__ import annotations

import pytest

from bench.grpccheck import (
    CallCounts,
    CheckError,
    cvae_counts,
    parse_trailers,
    triton_counts,
    verified,
)

# `nghttp -v` of a request Triton refused: HTTP 200, gRPC NOT_FOUND in the trailers (verbatim).
_NGHTTP_REFUSED = """
[  0.000] recv (stream_id=13) :status: 200
[  0.000] recv (stream_id=13) content-type: application/grpc
[  0.000] recv HEADERS frame <length=78, flags=0x04, stream_id=13>
[  0.000] recv (stream_id=13) grpc-status: 5
[  0.000] recv (stream_id=13) grpc-message: Request for unknown model: '' is not found
[  0.000] recv HEADERS frame <length=15, flags=0x05, stream_id=13>
"""
_TRITON_METRICS = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="cvae",version="1"} 5316
nv_inference_request_success{model="other",version="1"} 7
# HELP nv_inference_request_failure Number of failed inference requests
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="cvae",reason="OTHER",version="1"} 2
nv_inference_request_failure{model="cvae",reason="BACKEND",version="1"} 1
nv_inference_request_failure{model="cvae",reason="CANCELED",version="1"} 4
"""
_CVAE_METRICS = """# HELP cvae_requests_total RPCs answered, by method and status code
# TYPE cvae_requests_total counter
cvae_requests_total{code="OK",method="Generate"} 1952.0
cvae_requests_total{code="CANCELLED",method="Generate"} 3.0
cvae_requests_total{code="INVALID_ARGUMENT",method="Generate"} 2.0
cvae_requests_total{code="OK",method="GenerateStream"} 5.0
"""


def test_trailers_give_the_grpc_status_behind_an_http_200() -> None:
    check = parse_trailers(_NGHTTP_REFUSED)
    assert check.grpc_status == 5
    assert "unknown model" in check.grpc_message


def test_a_response_without_trailers_is_an_error() -> None:
    with pytest.raises(CheckError, match="no grpc-status"):
        parse_trailers("[  0.000] recv (stream_id=13) :status: 200\n")


def test_triton_counts_one_models_successes_and_failures() -> None:
    assert triton_counts("cvae")(_TRITON_METRICS) == CallCounts(ok=5316, cancelled=4, failed=3)


def test_cvae_counts_one_methods_calls_by_code() -> None:
    assert cvae_counts("Generate")(_CVAE_METRICS) == CallCounts(ok=1952, cancelled=3, failed=2)


def test_verification_allows_only_the_cancels_h2load_leaves_in_flight() -> None:
    assert verified(CallCounts(ok=110, cancelled=64, failed=0), 100, concurrency=64, runs=1)
    assert not verified(CallCounts(ok=110, cancelled=65, failed=0), 100, concurrency=64, runs=1)
    assert not verified(CallCounts(ok=99, cancelled=0, failed=0), 100, concurrency=64, runs=1)
    assert not verified(CallCounts(ok=110, cancelled=0, failed=1), 100, concurrency=64, runs=1)
    before, after = CallCounts(10, 1, 0), CallCounts(25, 2, 0)
    assert after - before == CallCounts(15, 1, 0)
