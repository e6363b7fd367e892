"""A CVAE model as the Open Inference Protocol sees it: named tensors in, `image` out.

Protocol-neutral (no protobuf, no HTTP): the gRPC and HTTP converters turn their wire form into
`InputTensor`s and plain parameter values, and this module checks them against the model and
builds the data plane's `GenerationJob`. Every refusal is an `InvalidArgument` whose message
starts with the input, output or parameter it is about.

    inputs      label  INT32 or INT64 [N], each in [0, num_classes)
                z      FP32 [N, latent_dim], optional: without it, latents come from `seed`
    parameters  seed (integer in [0, 2**64)), temperature (number in (0, 10], default 1)
    outputs     image  FP32 [N, H, W] in [0, 1], or UINT8 round(255 * x) when the requested
                output's parameter (or the request's parameter) "datatype" is "UINT8"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrepo import ModelSpec
from service.codec import MAX_TEMPERATURE, to_uint8
from service.errors import InvalidArgument, brief
from service.generator import GenerationJob, PixelFormat

PLATFORM = "onnxruntime_onnx"
LABEL = "label"
LATENT = "z"
IMAGE = "image"
SEED = "seed"
TEMPERATURE = "temperature"
DATATYPE = "datatype"  # parameter of the requested output (or the request): "FP32" or "UINT8"
LABEL_DATATYPES = ("INT32", "INT64")
# numpy dtype of each wire datatype this service reads or writes (little-endian, as the protocol)
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "UINT8": np.dtype("u1"),
}
_OUTPUT_FORMATS = {"FP32": PixelFormat.FLOAT32, "UINT8": PixelFormat.UINT8}
_SEED_LIMIT = 2**64
ParameterValue = bool | int | float | str


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str  # "FP32", "INT64", ...
    shape: tuple[int, ...]  # -1: any size


@dataclass(frozen=True)
class InputTensor:
    """One input as the wire gave it: its values flattened, in the dtype of its datatype."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray  # 1-D


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    parameters: Mapping[str, ParameterValue]


@dataclass(frozen=True)
class InferCall:
    """A checked inference request: the data plane's job and the output datatype."""

    job: GenerationJob
    output_datatype: str


def inputs_of(spec: ModelSpec) -> tuple[TensorMetadata, ...]:
    """The model's inputs (`label` is announced as INT64; INT32 is accepted too)."""
    return (
        TensorMetadata(LABEL, "INT64", (-1,)),
        TensorMetadata(LATENT, "FP32", (-1, spec.latent_dim)),
    )


def outputs_of(spec: ModelSpec) -> tuple[TensorMetadata, ...]:
    """The model's outputs (`image` is announced as FP32; UINT8 on request)."""
    height, width = spec.image_shape
    return (TensorMetadata(IMAGE, "FP32", (-1, height, width)),)


def decode_call(
    inputs: Sequence[InputTensor],
    parameters: Mapping[str, ParameterValue],
    outputs: Sequence[RequestedOutput],
    spec: ModelSpec,
    max_images: int,
) -> InferCall:
    """Check one request against the model and the image limit; unknown parameters are ignored."""
    by_name: dict[str, InputTensor] = {}
    for tensor in inputs:
        if tensor.name not in (LABEL, LATENT):
            raise InvalidArgument(
                f"inputs: {brief(tensor.name)} is not an input of this model; it takes "
                f"{LABEL} ({'|'.join(LABEL_DATATYPES)} [N]) and optionally {LATENT} "
                f"(FP32 [N, {spec.latent_dim}])"
            )
        if tensor.name in by_name:
            raise InvalidArgument(f"inputs: {tensor.name} is given twice")
        by_name[tensor.name] = tensor
    if LABEL not in by_name:
        raise InvalidArgument(f"inputs: {LABEL} is missing ({'|'.join(LABEL_DATATYPES)} [N])")
    labels = _labels(by_name[LABEL], spec.num_classes, max_images)
    latents = None
    if LATENT in by_name:
        latents = _latents(by_name[LATENT], len(labels), spec.latent_dim)
    output_datatype = _output_datatype(parameters, outputs)
    return InferCall(
        job=GenerationJob(
            labels=labels,
            latents=latents,
            seed=_seed(parameters.get(SEED)),
            temperature=_temperature(parameters.get(TEMPERATURE)),
            pixel_format=_OUTPUT_FORMATS[output_datatype],
            chunk_size=max(len(labels), 1),
            omit_latents=True,
        ),
        output_datatype=output_datatype,
    )


def image_output(images: np.ndarray, datatype: str) -> np.ndarray:
    """The `image` output in its wire datatype: float32 (n, H, W) as FP32 or UINT8."""
    if datatype == "UINT8":
        return to_uint8(images)
    return images.astype(NUMPY_DTYPES["FP32"], copy=False)


def check_values(tensor: InputTensor) -> None:
    """The number of values must be what the shape says."""
    if any(dim < 0 for dim in tensor.shape):
        raise InvalidArgument(f"{tensor.name}.shape: {list(tensor.shape)} has a negative size")
    expected = math.prod(tensor.shape)
    if tensor.values.size != expected:
        raise InvalidArgument(
            f"{tensor.name}: {tensor.values.size} values given for shape "
            f"{list(tensor.shape)} ({expected} values)"
        )


def _labels(tensor: InputTensor, num_classes: int, max_images: int) -> np.ndarray:
    if tensor.datatype not in LABEL_DATATYPES:
        raise InvalidArgument(
            f"{LABEL}.datatype: {brief(tensor.datatype)} must be one of "
            + ", ".join(LABEL_DATATYPES)
        )
    if len(tensor.shape) != 1:
        raise InvalidArgument(
            f"{LABEL}.shape: {brief(list(tensor.shape))} must be [N] (one label per image)"
        )
    check_values(tensor)
    count = tensor.shape[0]
    if count == 0:
        raise InvalidArgument(f"{LABEL}: must hold at least one label (one image per entry)")
    if count > max_images:
        raise InvalidArgument(
            f"{LABEL}: {count} images asked; at most {max_images} are allowed per request"
        )
    labels = tensor.values.astype(np.int64, copy=False)
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise InvalidArgument(
            f"{LABEL}[{index}]: {labels[index]} is outside [0, {num_classes}) "
            f"(the model has {num_classes} classes)"
        )
    return labels


def _latents(tensor: InputTensor, count: int, latent_dim: int) -> np.ndarray:
    if tensor.datatype != "FP32":
        raise InvalidArgument(f"{LATENT}.datatype: {brief(tensor.datatype)} must be FP32")
    expected = [count, latent_dim]
    if list(tensor.shape) != expected:
        raise InvalidArgument(
            f"{LATENT}.shape: {brief(list(tensor.shape))} must be [N, latent_dim] = {expected}"
        )
    check_values(tensor)
    latents = tensor.values.astype(np.float32, copy=False).reshape(count, latent_dim)
    finite = np.isfinite(latents)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise InvalidArgument(f"{LATENT}: row {row} holds NaN or Inf; values must be finite")
    return latents


def _seed(value: ParameterValue | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _SEED_LIMIT:
        raise InvalidArgument(f"parameters.{SEED}: {brief(value)} must be an integer in [0, 2**64)")
    return value


def _temperature(value: ParameterValue | None) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"parameters.{TEMPERATURE}: {brief(value)} must be a number")
    if not math.isfinite(value) or not 0.0 < value <= MAX_TEMPERATURE:
        raise InvalidArgument(
            f"parameters.{TEMPERATURE}: {value} must be finite and in (0, {MAX_TEMPERATURE:g}]"
        )
    return float(value)


def _output_datatype(
    parameters: Mapping[str, ParameterValue], outputs: Sequence[RequestedOutput]
) -> str:
    asked = {}
    if DATATYPE in parameters:
        asked[f"parameters.{DATATYPE}"] = parameters[DATATYPE]
    for output in outputs:
        if output.name != IMAGE:
            raise InvalidArgument(
                f"outputs: {brief(output.name)} is not an output of this model; it has {IMAGE}"
            )
        if DATATYPE in output.parameters:
            asked[f"outputs[{IMAGE}].parameters.{DATATYPE}"] = output.parameters[DATATYPE]
    for where, value in asked.items():
        if value not in _OUTPUT_FORMATS:
            raise InvalidArgument(f"{where}: {brief(value)} must be FP32 or UINT8")
    if len(set(asked.values())) > 1:
        raise InvalidArgument(
            f"{' and '.join(asked)} disagree: {', '.join(map(str, asked.values()))}"
        )
    return str(next(iter(asked.values()), "FP32"))
