"""codec: every bad field is refused with its name and range; images encode as the proto says."""

from __future__ import annotations

import dataclasses
import io

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from PIL import Image

from cvae.v1 import generator_pb2 as pb
from service import codec
from service.errors import InvalidArgument
from service.generator import GeneratedImages, PixelFormat
from service.runtime import ModelRuntime


def _latents(rows: int, cols: int, dtype: str = "float32", values: float = 0.0) -> pb.Tensor:
    data = np.full((rows, cols), values, dtype=np.float32).tobytes()
    return pb.Tensor(shape=[rows, cols], dtype=dtype, data=data)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"labels": []}, "labels: must hold at least one label"),
        ({"labels": [0, 10]}, "labels[1]: 10 is outside [0, 10)"),
        ({"labels": [-1]}, "labels[0]: -1 is outside [0, 10)"),
        ({"labels": [1] * 9}, "labels: 9 images asked; at most 8 are allowed"),
        ({"latents": _latents(2, 16)}, "latents.shape: [2, 16] must be [len(labels), latent_dim]"),
        ({"latents": _latents(1, 15)}, "latents.shape: [1, 15] must be"),
        ({"latents": _latents(1, 16, dtype="float64")}, "latents.dtype: 'float64' must be"),
        (
            {"latents": pb.Tensor(shape=[1, 16], dtype="float32", data=b"\0" * 60)},
            "latents.data: 60 bytes, must be 64",
        ),
        ({"latents": _latents(1, 16, values=np.nan)}, "latents: row 0 holds NaN or Inf"),
        ({"latents": _latents(1, 16, values=np.inf)}, "latents: row 0 holds NaN or Inf"),
        ({"temperature": -0.5}, "temperature: -0.5 must be finite and in [0, 10]"),
        ({"temperature": float("nan")}, "temperature: nan must be finite"),
        ({"temperature": float("inf")}, "temperature: inf must be finite"),
        ({"temperature": 11.0}, "temperature: 11.0 must be finite and in [0, 10]"),
        ({"encoding": 7}, "encoding: 7 is not one of ENCODING_UNSPECIFIED=0"),
    ],
)
def test_bad_requests_name_the_field_and_range(
    runtime: ModelRuntime, request_fields: dict[str, object], message: str
) -> None:
    fields = {"labels": [3], **request_fields}
    request = pb.GenerateRequest(**fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as raised:
        codec.decode_generate(request, runtime.spec, max_images=8)
    assert message in str(raised.value)


def test_chunk_size_above_the_limit_is_refused(runtime: ModelRuntime) -> None:
    request = pb.GenerateRequest(labels=[1, 2], chunk_size=65)
    with pytest.raises(InvalidArgument, match=r"chunk_size: 65 must be in \[0, 64\]"):
        codec.decode_stream(request, runtime.spec, 100, default_chunk=16, max_chunk=64)
    job = codec.decode_stream(pb.GenerateRequest(labels=[1]), runtime.spec, 100, 16, 64)
    assert job.chunk_size == 16


def test_a_good_request_decodes(runtime: ModelRuntime) -> None:
    latents = np.arange(32, dtype=np.float32).reshape(2, 16)
    request = pb.GenerateRequest(
        labels=[4, 9],
        latents=pb.Tensor(shape=[2, 16], dtype="float32", data=latents.tobytes()),
        encoding=pb.FLOAT32,
        temperature=0.0,
        omit_latents=True,
    )
    job = codec.decode_generate(request, runtime.spec, max_images=8)
    assert job.labels.tolist() == [4, 9] and job.labels.dtype == np.int64
    assert job.latents is not None and job.latents.tobytes() == latents.tobytes()
    assert job.temperature == 1.0  # 0 means 1.0
    assert job.pixel_format is PixelFormat.FLOAT32
    assert job.seed is None and job.omit_latents


def test_uint8_is_round_255x_clipped() -> None:
    images = np.array([[[0.0, 1.0, 0.5, 0.2, 1.2, -0.1]]], dtype=np.float32)
    assert codec.to_uint8(images).tolist() == [[[0, 255, 128, 51, 255, 0]]]


def test_png_decodes_back_to_the_uint8_image() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28)).astype(np.uint8)
    encoded = codec.to_png(images)
    assert len(encoded) == 2
    decoded = np.array(Image.open(io.BytesIO(encoded[1])))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, images[1])


def test_response_carries_images_latents_and_seed(runtime: ModelRuntime) -> None:
    request = pb.GenerateRequest(labels=[1, 2], seed=5, encoding=pb.FLOAT32)
    job = codec.decode_generate(request, runtime.spec, max_images=8)
    images = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    latents = np.ones((2, 16), dtype=np.float32)
    result = GeneratedImages(runtime, images, job.labels, latents, 5, 0)
    response = codec.encode_generated(result, job)
    assert list(response.images.shape) == [2, 28, 28] and response.images.dtype == "float32"
    assert np.frombuffer(response.images.data, "<f4").reshape(2, 28, 28).tobytes() == (
        images.tobytes()
    )
    assert list(response.latents.shape) == [2, 16]
    assert response.HasField("seed") and response.seed == 5
    assert (response.model_name, response.model_version) == ("cvae-mnist", "1")
    assert list(response.labels) == [1, 2]


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    labels=st.lists(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 300), max_size=40),
    num_classes=st.sampled_from([1, 10, 128, 129, 256, 300, 70000]),
    seed=st.none() | st.integers(0, 2**64 - 1),
    labels_last=st.booleans(),
)
def test_labels_read_from_the_wire_match_protobufs_reading(
    runtime: ModelRuntime,
    labels: list[int],
    num_classes: int,
    seed: int | None,
    labels_last: bool,
) -> None:
    """parse_generate's packed-labels path accepts and refuses exactly what protobuf's does, with
    the same message, whatever the labels and wherever the field sits on the wire."""
    spec = dataclasses.replace(runtime.spec, num_classes=num_classes)
    request = pb.GenerateRequest(labels=labels, seed=seed)
    data = request.SerializeToString()
    if labels_last and labels:  # the labels field after the others (legal, if unusual)
        rest = pb.GenerateRequest(seed=seed).SerializeToString()
        data = rest + pb.GenerateRequest(labels=labels).SerializeToString()

    def outcome(job_of: object) -> tuple[str, object]:
        try:
            job = job_of()  # type: ignore[operator]
        except InvalidArgument as error:
            return "refused", str(error)
        return "accepted", job.labels.tolist()

    expected = outcome(lambda: codec.decode_stream(request, spec, 30, 8, 8))
    parsed, packed = codec.parse_generate(data)
    assert parsed.seed == request.seed
    assert outcome(lambda: codec.decode_stream(parsed, spec, 30, 8, 8, packed)) == expected
    unary = outcome(lambda: codec.decode_generate(parsed, spec, 30, packed))
    assert unary == expected


def test_stream_labels_stay_one_byte_each_and_chunks_get_int64(runtime: ModelRuntime) -> None:
    parsed, packed = codec.parse_generate(pb.GenerateRequest(labels=[1, 2, 3]).SerializeToString())
    assert packed is not None
    job = codec.decode_stream(parsed, runtime.spec, 10, 2, 2, packed)
    assert job.labels.dtype == np.uint8 and job.labels.tolist() == [1, 2, 3]
    assert codec.decode_generate(parsed, runtime.spec, 10, packed).labels.dtype == np.int64
