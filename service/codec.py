"""Protobuf <-> numpy: decode and check requests, encode images and model descriptions.

With the servicer, the only module that touches the generated stubs. Every refusal is an
`InvalidArgument` whose message starts with the field and states the allowed range.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as _ProtoMessage

from cvae.v1 import generator_pb2 as pb
from modelrepo import ModelSpec
from service.errors import InvalidArgument, brief
from service.generator import GeneratedImages, GenerationJob, PixelFormat

MAX_TEMPERATURE = 10.0
_FORMATS = {
    pb.ENCODING_UNSPECIFIED: PixelFormat.UINT8,
    pb.UINT8: PixelFormat.UINT8,
    pb.FLOAT32: PixelFormat.FLOAT32,
    pb.PNG: PixelFormat.PNG,
}
_FLOAT32_LE = np.dtype("<f4")
_Message = TypeVar("_Message", bound=_ProtoMessage)


def parse(message_type: type[_Message], data: bytes) -> _Message:
    """A request message from its wire bytes; garbage is the caller's INVALID_ARGUMENT."""
    try:
        return message_type.FromString(data)
    except DecodeError as error:
        raise InvalidArgument(
            f"request: not a valid {message_type.DESCRIPTOR.full_name} message ({error})"
        ) from None


def decode_generate(request: pb.GenerateRequest, spec: ModelSpec, max_images: int) -> GenerationJob:
    """Check a Generate request against the model and the image limit (chunk_size is ignored)."""
    return _decode(request, spec, max_images, chunk_size=max(len(request.labels), 1))


def decode_stream(
    request: pb.GenerateRequest,
    spec: ModelSpec,
    max_images: int,
    default_chunk: int,
    max_chunk: int,
) -> GenerationJob:
    """Check a GenerateStream request; chunk_size 0 means `default_chunk`."""
    if request.chunk_size > max_chunk:
        raise InvalidArgument(
            f"chunk_size: {request.chunk_size} must be in [0, {max_chunk}] (0: server default "
            f"{default_chunk})"
        )
    return _decode(request, spec, max_images, chunk_size=request.chunk_size or default_chunk)


def _decode(
    request: pb.GenerateRequest, spec: ModelSpec, max_images: int, chunk_size: int
) -> GenerationJob:
    labels = _decode_labels(request.labels, spec.num_classes, max_images)
    latents = None
    if request.HasField("latents"):
        latents = _decode_latents(request.latents, len(labels), spec.latent_dim)
    temperature = request.temperature
    if not math.isfinite(temperature) or not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidArgument(
            f"temperature: {temperature} must be finite and in [0, {MAX_TEMPERATURE:g}] "
            "(0 means 1.0)"
        )
    pixel_format = decode_encoding(request.encoding)
    return GenerationJob(
        labels=labels,
        latents=latents,
        seed=request.seed if request.HasField("seed") else None,
        temperature=temperature or 1.0,
        pixel_format=pixel_format,
        chunk_size=chunk_size,
        omit_latents=request.omit_latents,
    )


def decode_encoding(encoding: int) -> PixelFormat:
    """The PixelFormat of an `encoding` field, or InvalidArgument listing the valid values."""
    pixel_format = _FORMATS.get(encoding)  # type: ignore[call-overload]
    if pixel_format is None:
        raise InvalidArgument(
            f"encoding: {encoding} is not one of "
            + ", ".join(f"{pb.Encoding.Name(value)}={value}" for value in pb.Encoding.values())
        )
    return pixel_format


def encode_generated(result: GeneratedImages, job: GenerationJob) -> pb.GenerateResponse:
    """One response message for `result` (a whole request or one streamed chunk)."""
    spec = result.runtime.spec
    response = pb.GenerateResponse(
        labels=result.labels.tolist(),
        model_name=spec.name,
        model_version=spec.version,
        offset=result.offset,
    )
    if job.pixel_format is PixelFormat.PNG:
        response.png.extend(to_png(to_uint8(result.images)))
    elif job.pixel_format is PixelFormat.UINT8:
        _fill_tensor(response.images, to_uint8(result.images))
    else:
        _fill_tensor(response.images, result.images)
    if not job.omit_latents:
        _fill_tensor(response.latents, result.latents)
    if result.seed is not None:
        response.seed = result.seed
    return response


def encode_model_info(
    spec: ModelSpec, available_versions: Sequence[str], max_images: int, max_stream_images: int
) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=spec.name,
        version=spec.version,
        num_classes=spec.num_classes,
        latent_dim=spec.latent_dim,
        image_shape=list(spec.image_shape),
        class_names=list(spec.class_names),
        max_images_per_request=max_images,
        metrics=[pb.Metric(name=name, value=value) for name, value in sorted(spec.metrics.items())],
        available_versions=list(available_versions),
        max_images_per_stream=max_stream_images,
    )


def _fill_tensor(tensor: pb.Tensor, array: np.ndarray) -> None:
    tensor.shape.extend(array.shape)
    if array.dtype == np.uint8:
        tensor.dtype = "uint8"
        tensor.data = array.tobytes()
    else:
        tensor.dtype = "float32"
        tensor.data = array.astype(_FLOAT32_LE, copy=False).tobytes()


def to_uint8(images: np.ndarray) -> np.ndarray:
    """round(255 * x), x clipped to [0, 1]: float32 (n, H, W) -> uint8 (n, H, W)."""
    scaled = images * np.float32(255.0)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def to_png(images: np.ndarray) -> list[bytes]:
    """One grayscale PNG per uint8 (H, W) image."""
    from PIL import Image  # only PNG requests pay for Pillow

    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def _decode_labels(raw: Sequence[int], num_classes: int, max_images: int) -> np.ndarray:
    count = len(raw)
    if count == 0:
        raise InvalidArgument("labels: must hold at least one label (one image per entry)")
    if count > max_images:
        raise InvalidArgument(
            f"labels: {count} images asked; at most {max_images} are allowed per request "
            "(max_images_per_request, or max_images_per_stream for GenerateStream)"
        )
    labels = np.fromiter(raw, dtype=np.int64, count=count)
    if min(raw) < 0 or max(raw) >= num_classes:  # in C over the field: cheapest for any size
        index = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise InvalidArgument(
            f"labels[{index}]: {labels[index]} is outside [0, {num_classes}) "
            f"(the model has {num_classes} classes)"
        )
    return labels


def _decode_latents(tensor: pb.Tensor, count: int, latent_dim: int) -> np.ndarray:
    expected = [count, latent_dim]
    if tensor.dtype != "float32":
        raise InvalidArgument(f"latents.dtype: {brief(tensor.dtype)} must be 'float32'")
    if list(tensor.shape) != expected:
        raise InvalidArgument(
            f"latents.shape: {brief(list(tensor.shape))} must be [len(labels), latent_dim] = "
            f"{expected}"
        )
    expected_bytes = count * latent_dim * 4
    if len(tensor.data) != expected_bytes:
        raise InvalidArgument(
            f"latents.data: {len(tensor.data)} bytes, must be {expected_bytes} "
            f"({count} x {latent_dim} float32, little-endian)"
        )
    latents = np.frombuffer(tensor.data, dtype=_FLOAT32_LE).reshape(count, latent_dim)
    finite = np.isfinite(latents)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise InvalidArgument(f"latents: row {row} holds NaN or Inf; values must be finite")
    return latents
