"""What the client returns: numpy results and model descriptions, converted from the protocol."""

from __future__ import annotations

import enum
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvae.v1 import generator_pb2 as pb

_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "uint8": np.dtype("u1")}


class Encoding(enum.Enum):
    """How images travel: raw uint8, raw float32 in [0, 1], or one PNG per image."""

    UINT8 = "uint8"
    FLOAT32 = "float32"
    PNG = "png"

    @property
    def proto(self) -> int:
        return {
            Encoding.UINT8: pb.UINT8,
            Encoding.FLOAT32: pb.FLOAT32,
            Encoding.PNG: pb.PNG,
        }[self]


@dataclass(frozen=True)
class GenerateResult:
    """Images from one Generate call, or one chunk of a stream."""

    images: np.ndarray
    """uint8 or float32 [N, H, W]; PNG answers are decoded to uint8."""
    labels: np.ndarray
    """int64 [N], the label of each image."""
    latents: np.ndarray | None
    """float32 [N, latent_dim], the z actually used (None when omitted)."""
    model_name: str
    model_version: str
    seed: int | None
    """The seed the latents were drawn from (None when latents were given)."""
    offset: int = 0
    """Index, in the request, of the first image here."""
    png: tuple[bytes, ...] = field(default=(), repr=False)
    """The PNG bytes as sent, when the encoding was PNG."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model version, as the server describes it."""

    name: str
    version: str
    num_classes: int
    latent_dim: int
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    max_images_per_request: int
    max_images_per_stream: int
    metrics: dict[str, float]
    available_versions: tuple[str, ...]
    has_encoder: bool = False
    """Whether Encode, Reconstruct, Restyle and Score work on this version."""
    available_models: tuple[str, ...] = ()
    """Every model the server serves (`Client(model=...)` picks one)."""
    default_model: str = ""
    """The model calls get when the client names none."""


def tensor_to_numpy(tensor: pb.Tensor) -> np.ndarray:
    """Decode a protocol Tensor (little-endian, row-major) into a numpy array."""
    try:
        dtype = _NUMPY_DTYPES[tensor.dtype]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {tensor.dtype!r}") from None
    shape = tuple(int(d) for d in tensor.shape)
    array = np.frombuffer(tensor.data, dtype=dtype)
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"tensor of shape {shape} holds {array.size} values")
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def numpy_to_tensor(array: np.ndarray) -> pb.Tensor:
    """Encode a float32 or uint8 array as a protocol Tensor."""
    name = array.dtype.name
    if name not in _NUMPY_DTYPES:
        raise ValueError(f"tensors must be float32 or uint8, got {array.dtype}")
    data = np.ascontiguousarray(array, dtype=_NUMPY_DTYPES[name]).tobytes()
    return pb.Tensor(shape=list(array.shape), dtype=name, data=data)


def build_request(
    labels: Sequence[int] | np.ndarray,
    *,
    seed: int | None,
    temperature: float,
    latents: np.ndarray | None,
    encoding: Encoding,
    model_version: str | None,
    chunk_size: int = 0,
    omit_latents: bool = False,
) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        labels=[int(label) for label in labels],
        temperature=float(temperature),
        encoding=encoding.proto,  # type: ignore[arg-type]
        model_version=model_version or "",
        chunk_size=int(chunk_size),
        omit_latents=omit_latents,
    )
    if seed is not None:
        request.seed = int(seed)
    if latents is not None:
        request.latents.CopyFrom(numpy_to_tensor(np.asarray(latents, dtype=np.float32)))
    return request


def _decode_pngs(pngs: Sequence[bytes]) -> np.ndarray:
    from PIL import Image  # only PNG answers need Pillow

    frames = [np.asarray(Image.open(io.BytesIO(data)).convert("L")) for data in pngs]
    return np.stack(frames) if frames else np.zeros((0, 0, 0), dtype=np.uint8)


def result_from_response(response: pb.GenerateResponse) -> GenerateResult:
    images = _decode_pngs(response.png) if response.png else tensor_to_numpy(response.images)
    latents = tensor_to_numpy(response.latents) if response.latents.data else None
    return GenerateResult(
        images=images,
        labels=np.asarray(response.labels, dtype=np.int64),
        latents=latents,
        model_name=response.model_name,
        model_version=response.model_version,
        seed=response.seed if response.HasField("seed") else None,
        offset=int(response.offset),
        png=tuple(response.png),
    )


def model_info_from_proto(info: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=info.name,
        version=info.version,
        num_classes=int(info.num_classes),
        latent_dim=int(info.latent_dim),
        image_shape=tuple(int(d) for d in info.image_shape),
        class_names=tuple(info.class_names),
        max_images_per_request=int(info.max_images_per_request),
        max_images_per_stream=int(info.max_images_per_stream),
        metrics={metric.name: float(metric.value) for metric in info.metrics},
        available_versions=tuple(info.available_versions),
        has_encoder=bool(info.has_encoder),
        available_models=tuple(info.available_models),
        default_model=info.default_model,
    )
