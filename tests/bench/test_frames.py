"""bench/frames.py: the gRPC wire frames h2load posts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.frames import (
    FrameError,
    decode_frames,
    encode_frame,
    generate_frame,
    infer_frame,
    infer_json,
)
from cvae.inference.grpc_service_pb2 import ModelInferRequest
from cvae.v1 import generator_pb2
from modelrepo import newest_spec
from service.oip import grpc_codec, http_codec


def test_a_frame_is_a_zero_flag_then_the_big_endian_length_then_the_message() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00\x00"
    assert encode_frame(b"x" * 300)[:5] == b"\x00\x00\x00\x01\x2c"


@settings(deadline=None)  # timing on a shared machine is not what is tested
@given(st.lists(st.binary(max_size=600), max_size=5))
def test_frames_decode_back_to_the_messages_in_order(messages: list[bytes]) -> None:
    body = b"".join(encode_frame(message) for message in messages)
    assert decode_frames(body) == messages


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x00\x00\x00", "truncated frame header"),
        (b"\x00\x00\x00\x00\x05abc", "claims 5 bytes"),
        (b"\x07\x00\x00\x00\x00", "bad compression flag"),
        (b"\x01\x00\x00\x00\x00", "compressed"),
    ],
)
def test_malformed_bodies_are_refused_with_the_reason(body: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        decode_frames(body)


def test_the_generate_frame_carries_a_request_the_service_can_parse() -> None:
    (message,) = decode_frames(generate_frame(12, "PNG", seed=99))
    request = generator_pb2.GenerateRequest.FromString(message)
    assert list(request.labels) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert request.encoding == generator_pb2.PNG
    assert request.HasField("seed") and request.seed == 99
    assert request.omit_latents


def test_generate_frame_refuses_what_the_bench_never_means_to_send() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        generate_frame(0, "UINT8")
    with pytest.raises(ValueError, match="encoding must be one of"):
        generate_frame(1, "JPEG")


def test_the_oip_frame_and_json_ask_the_service_for_the_same_work_as_the_generate_frame() -> None:
    """The service's own OIP codecs read both bodies as the cvae.v1 request's job: same labels,
    seed and UINT8 images, so the protocols are compared on the same work."""
    spec = newest_spec(Path(__file__).resolve().parents[2] / "models", "cvae-mnist")
    (message,) = decode_frames(infer_frame(spec.name, 12, seed=99))
    over_grpc = grpc_codec.decode_call(ModelInferRequest.FromString(message), spec, 256)
    over_http = http_codec.decode_infer(infer_json(spec.name, 12, seed=99), None, spec, 256).call
    (generate,) = decode_frames(generate_frame(12, "UINT8", seed=99))
    labels = list(generator_pb2.GenerateRequest.FromString(generate).labels)
    for call in (over_grpc, over_http):
        assert call.job.labels.tolist() == labels
        assert call.job.seed == 99 and call.job.latents is None
        assert call.output_datatype == "UINT8"
