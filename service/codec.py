"""Protobuf <-> numpy: decode and check requests, encode images and model descriptions.

With the servicer, the only module that touches the generated stubs. Every refusal is an
`InvalidArgument` whose message starts with the field and states the allowed range.
"""

from __future__ import annotations

import dataclasses
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


def parse_generate(data: bytes) -> tuple[pb.GenerateRequest, memoryview | None]:
    """A GenerateRequest from its wire bytes, its labels left packed when that is cheaper.

    A request's labels come first on the wire (protobuf libraries write fields in number
    order) as one packed field: one byte per label below 128. Parsing them into a protobuf
    container and copying that into numpy cost ~90 ns a label of event-loop time (a 2M-label
    stream ~165 ms, all of it before a bad label could be refused) and 4+8 bytes a label for the
    stream's whole life. So that field is cut off the bytes before protobuf parses the rest, and
    returned as it is (`_packed_labels` reads it with numpy, in C); anything else (labels later
    or in several fields) is parsed by protobuf alone, and the second value is None.
    """
    field = _leading_labels_field(data)
    if field is not None:
        end, packed = field
        request = parse(pb.GenerateRequest, data[end:])
        if not request.labels:  # the labels were in that field alone
            return request, packed
    return parse(pb.GenerateRequest, data), None


def decode_generate(
    request: pb.GenerateRequest, spec: ModelSpec, max_images: int, packed: memoryview | None = None
) -> GenerationJob:
    """Check a Generate request against the model and the image limit (chunk_size is ignored).

    `packed`: the labels as `parse_generate` left them (else they are in `request`)."""
    job = _decode(request, spec, max_images, None, packed)
    return dataclasses.replace(
        job, labels=job.labels.astype(np.int64), chunk_size=max(len(job.labels), 1)
    )


def decode_stream(
    request: pb.GenerateRequest,
    spec: ModelSpec,
    max_images: int,
    default_chunk: int,
    max_chunk: int,
    packed: memoryview | None = None,
) -> GenerationJob:
    """Check a GenerateStream request; chunk_size 0 means `default_chunk`.

    The job's labels stay compact (uint8 for labels below 256, else int32) for the stream's
    life; each chunk's are made int64 when it is submitted (generator.py)."""
    if request.chunk_size > max_chunk:
        raise InvalidArgument(
            f"chunk_size: {request.chunk_size} must be in [0, {max_chunk}] (0: server default "
            f"{default_chunk})"
        )
    return _decode(request, spec, max_images, request.chunk_size or default_chunk, packed)


def _decode(
    request: pb.GenerateRequest,
    spec: ModelSpec,
    max_images: int,
    chunk_size: int | None,
    packed: memoryview | None,
) -> GenerationJob:
    if packed is not None:
        labels = _packed_labels(packed, spec.num_classes, max_images)
    else:
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
        chunk_size=chunk_size or 1,
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


def _check_count(count: int, max_images: int) -> None:
    if count == 0:
        raise InvalidArgument("labels: must hold at least one label (one image per entry)")
    if count > max_images:
        raise InvalidArgument(
            f"labels: {count} images asked; at most {max_images} are allowed per request "
            "(max_images_per_request, or max_images_per_stream for GenerateStream)"
        )


def _outside(index: int, value: int, num_classes: int) -> InvalidArgument:
    return InvalidArgument(
        f"labels[{index}]: {value} is outside [0, {num_classes}) "
        f"(the model has {num_classes} classes)"
    )


def _decode_labels(raw: Sequence[int], num_classes: int, max_images: int) -> np.ndarray:
    """Labels from the protobuf container (np.asarray copies it in C), compact."""
    _check_count(len(raw), max_images)
    labels = np.asarray(raw, dtype=np.int32)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise _outside(index, int(labels[index]), num_classes)
    return labels.astype(np.uint8) if num_classes <= 256 else labels


def _packed_labels(packed: memoryview, num_classes: int, max_images: int) -> np.ndarray:
    """Labels from their packed field's bytes (varints), in C whatever their number."""
    raw = np.frombuffer(packed, dtype=np.uint8)
    continued = raw >= 0x80  # a byte of a varint that goes on: a label >= 128, or negative
    _check_count(len(raw) - int(np.count_nonzero(continued)), max_images)
    if not continued.any():  # one byte a label
        bad = raw >= num_classes
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise _outside(index, int(raw[index]), num_classes)
        return raw.copy()  # its own buffer: the request's bytes can go
    if num_classes <= 128:  # every label of more than one byte is out of range
        first = int(np.flatnonzero(continued)[0])  # the labels before it are one byte each
        bad = raw[:first] >= num_classes
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise _outside(index, int(raw[index]), num_classes)
        raise _outside(first, _varint_int32(packed, first), num_classes)
    field = pb.GenerateRequest()
    field.ParseFromString(_LABELS_TAG + _varint_bytes(len(packed)) + bytes(packed))
    return _decode_labels(field.labels, num_classes, max_images)


_LABELS_TAG = b"\x0a"  # field 1 (labels), wire type 2 (length-delimited: packed)


def _leading_labels_field(data: bytes) -> tuple[int, memoryview] | None:
    """(end offset, packed bytes) of a labels field at the start of `data`, else None."""
    if not data.startswith(_LABELS_TAG):
        return None
    length, start = 0, 1
    for shift in range(0, 35, 7):  # the field's length: a varint of at most 5 bytes
        if start >= len(data):
            return None
        byte = data[start]
        start += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
    else:
        return None
    end = start + length
    if end > len(data):
        return None  # truncated: protobuf names the error
    return end, memoryview(data)[start:end]


def _varint_int32(data: memoryview, start: int) -> int:
    """The int32 varint at `start` (negative ones take 10 bytes, two's complement)."""
    value = 0
    for shift in range(0, 70, 7):
        if start >= len(data):
            break
        byte = data[start]
        start += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
    value &= 0xFFFFFFFF  # protobuf keeps an int32's low 32 bits
    return value - (1 << 32) if value >= 1 << 31 else value


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


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
