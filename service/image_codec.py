"""Protobuf <-> numpy for the RPCs that start from real images: Encode, Reconstruct, Restyle,
Score. Every refusal is an `InvalidArgument` naming the field (and index) and what is allowed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvae.v1 import generator_pb2 as pb
from modelrepo import ModelSpec
from service.codec import decode_encoding
from service.errors import InvalidArgument, brief
from service.generator import PixelFormat

MAX_SAMPLES = 1024  # importance samples per (image, label) in one Score request
_DTYPES: dict[str, np.dtype[Any]] = {"uint8": np.dtype("u1"), "float32": np.dtype("<f4")}


@dataclass(frozen=True)
class ImageJob:
    """Real images and their labels, checked against the model they will run on."""

    images: np.ndarray  # float32 (N, H, W) in [0, 1]
    labels: np.ndarray | None  # int64 (N,) or None (Score without labels)
    pixel_format: PixelFormat = PixelFormat.UINT8
    omit_latents: bool = False
    targets: np.ndarray | None = None  # Restyle: int64 (T,)
    samples: int = 1  # Score: k >= 1
    seed: int | None = None  # Score


def decode_encode(request: pb.EncodeRequest, spec: ModelSpec, max_images: int) -> ImageJob:
    images = decode_images(request.images, request.png, spec, max_images)
    return ImageJob(images, decode_true_labels(request.labels, len(images), spec.num_classes))


def decode_reconstruct(
    request: pb.ReconstructRequest, spec: ModelSpec, max_images: int
) -> ImageJob:
    images = decode_images(request.images, request.png, spec, max_images)
    return ImageJob(
        images,
        decode_true_labels(request.labels, len(images), spec.num_classes),
        decode_encoding(request.encoding),
        request.omit_latents,
    )


def decode_restyle(request: pb.RestyleRequest, spec: ModelSpec, max_images: int) -> ImageJob:
    images = decode_images(request.images, request.png, spec, max_images)
    labels = decode_true_labels(request.labels, len(images), spec.num_classes)
    raw = request.target_labels
    if not raw:
        raise InvalidArgument("target_labels: must hold at least one label to draw the images in")
    targets = np.asarray(raw, dtype=np.int64)
    _check_range(targets, spec.num_classes, "target_labels")
    if len(images) * len(targets) > max_images:
        raise InvalidArgument(
            f"target_labels: {len(images)} images x {len(targets)} targets = "
            f"{len(images) * len(targets)} images; at most {max_images} are allowed per request "
            "(max_images_per_request)"
        )
    return ImageJob(
        images,
        labels,
        decode_encoding(request.encoding),
        request.omit_latents,
        targets=targets,
    )


def decode_score(request: pb.ScoreRequest, spec: ModelSpec, max_images: int) -> ImageJob:
    images = decode_images(request.images, request.png, spec, max_images)
    labels = None
    if request.labels:
        labels = decode_true_labels(request.labels, len(images), spec.num_classes)
    samples = max(int(request.samples), 1)
    if samples > MAX_SAMPLES:
        raise InvalidArgument(
            f"samples: {request.samples} must be in [0, {MAX_SAMPLES}] (0 or 1: the ELBO)"
        )
    if len(images) * samples > max_images:
        raise InvalidArgument(
            f"samples: {len(images)} images x {samples} samples = {len(images) * samples}; at "
            f"most {max_images} are allowed per request (max_images_per_request: images x "
            "samples, for each label)"
        )
    seed = request.seed if request.HasField("seed") else None
    return ImageJob(images, labels, samples=samples, seed=seed)


def decode_images(
    tensor: pb.Tensor, png: Sequence[bytes], spec: ModelSpec, max_images: int
) -> np.ndarray:
    """float32 (N, H, W) in [0, 1] from exactly one of `images` (a Tensor) or `png`."""
    # Each read of a bytes field copies it (upb): read `data` once, here, and hand it down.
    data = tensor.data
    has_tensor = bool(tensor.shape or tensor.dtype or data)
    if has_tensor and png:
        raise InvalidArgument("png: set either images (a Tensor) or png, not both")
    if png:
        if len(png) > max_images:
            raise InvalidArgument(
                f"png: {len(png)} images; at most {max_images} are allowed per request "
                "(max_images_per_request)"
            )
        return np.stack([_decode_png(data, index, spec) for index, data in enumerate(png)])
    if not has_tensor:
        raise InvalidArgument(
            "images: set images (a uint8 or float32 Tensor [N, H, W]) or png (one grayscale "
            "PNG per image); neither is set"
        )
    return _decode_tensor(tensor, data, spec, max_images)


def _decode_tensor(tensor: pb.Tensor, data: bytes, spec: ModelSpec, max_images: int) -> np.ndarray:
    height, width = spec.image_shape
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise InvalidArgument(f"images.dtype: {brief(tensor.dtype)} must be 'uint8' or 'float32'")
    shape = list(tensor.shape)
    if len(shape) != 3 or shape[1:] != [height, width] or shape[0] < 1:
        raise InvalidArgument(
            f"images.shape: {brief(shape)} must be [N, {height}, {width}] with N >= 1 "
            "(the model's image_shape)"
        )
    count = shape[0]
    if count > max_images:
        raise InvalidArgument(
            f"images.shape: {count} images; at most {max_images} are allowed per request "
            "(max_images_per_request)"
        )
    expected = count * height * width * dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"images.data: {len(data)} bytes, must be {expected} "
            f"({count} x {height} x {width} {tensor.dtype}, little-endian)"
        )
    raw = np.frombuffer(data, dtype=dtype).reshape(count, height, width)
    if dtype == np.uint8:
        return _from_uint8(raw)
    # Two reductions and no temporaries: NaN fails both comparisons, and infinities one.
    if not (raw.min() >= 0.0 and raw.max() <= 1.0):
        bad = ~((raw >= 0.0) & (raw <= 1.0))
        index = int(np.flatnonzero(bad.any(axis=(1, 2)))[0])
        value = float(raw[index][bad[index]][0])
        raise InvalidArgument(
            f"images[{index}]: holds {value!r}; float32 pixels must be finite and in [0, 1]"
        )
    # Native order without a copy where it already is (a read-only view of the request's bytes;
    # nothing downstream writes to images).
    return raw.astype(np.float32, copy=False)


def _decode_png(data: bytes, index: int, spec: ModelSpec) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # only PNG requests pay for Pillow

    height, width = spec.image_shape
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        if image.size != (width, height):  # checked before decoding the pixels
            raise InvalidArgument(
                f"png[{index}]: {image.size[1]} x {image.size[0]} pixels (H x W), must be "
                f"{height} x {width} (the model's image_shape)"
            )
        pixels = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InvalidArgument(f"png[{index}]: not a decodable PNG image ({error})") from None
    return _from_uint8(pixels[None])[0]


def _from_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.multiply(pixels, np.float32(1.0 / 255.0), dtype=np.float32)  # one pass, one array


def decode_true_labels(raw: Sequence[int], count: int, num_classes: int) -> np.ndarray:
    """One label per image, each in [0, num_classes)."""
    given = len(raw)
    if given < count:
        raise InvalidArgument(
            f"labels[{given}]: missing; one label per image ({count} images, {given} labels)"
        )
    if given > count:
        raise InvalidArgument(
            f"labels[{count}]: extra; one label per image ({count} images, {given} labels)"
        )
    labels = np.asarray(raw, dtype=np.int64)
    _check_range(labels, num_classes, "labels")
    return labels


def _check_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InvalidArgument(
            f"{name}[{index}]: {labels[index]} is outside [0, {num_classes}) "
            f"(the model has {num_classes} classes)"
        )


def tensor_of(array: np.ndarray) -> pb.Tensor:
    """A float32 Tensor message (little-endian, row-major)."""
    data = np.ascontiguousarray(array, dtype=_DTYPES["float32"]).tobytes()
    return pb.Tensor(shape=list(array.shape), dtype="float32", data=data)


def encode_encoded(
    spec: ModelSpec, mean: np.ndarray, log_variance: np.ndarray, labels: np.ndarray
) -> pb.EncodeResponse:
    return pb.EncodeResponse(
        mean=tensor_of(mean),
        log_variance=tensor_of(log_variance),
        labels=labels.tolist(),
        model_name=spec.name,
        model_version=spec.version,
    )


def encode_scores(
    spec: ModelSpec,
    log_likelihood: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    samples: int,
) -> pb.ScoreResponse:
    """The ScoreResponse of bounds float (N, num_classes): probabilities, argmax, given label."""
    bounds = log_likelihood.astype(np.float64)
    shifted = np.exp(bounds - bounds.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    response = pb.ScoreResponse(
        log_likelihood=tensor_of(bounds.astype(np.float32)),
        label_probabilities=tensor_of(probabilities.astype(np.float32)),
        predicted_labels=np.argmax(bounds, axis=1).tolist(),
        model_name=spec.name,
        model_version=spec.version,
        seed=seed,
        samples=samples,
    )
    if labels is not None:
        response.label_log_likelihood.extend(
            bounds[np.arange(len(labels)), labels].astype(np.float32).tolist()
        )
    return response
