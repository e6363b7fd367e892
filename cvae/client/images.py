"""Requests and typed results of the RPCs that start from real images (Encode, Reconstruct,
Restyle, Score), shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cvae.client.types import Encoding, numpy_to_tensor, tensor_to_numpy
from cvae.v1 import generator_pb2 as pb

Images = np.ndarray | Sequence[bytes]
"""uint8 [N, H, W] (pixel / 255), float32 [N, H, W] in [0, 1], or one grayscale PNG per image."""


@dataclass(frozen=True)
class EncodeResult:
    """Q(z|x,y) of each image: mean and log-variance, float32 [N, latent_dim]."""

    mean: np.ndarray
    log_variance: np.ndarray
    labels: np.ndarray
    model_name: str
    model_version: str


@dataclass(frozen=True)
class ScoreResult:
    """How well each label explains each image."""

    log_likelihood: np.ndarray
    """float32 [N, num_classes]: the bound on log p(x|y) in nats, for every label."""
    label_probabilities: np.ndarray
    """float32 [N, num_classes]: p(y|x) with a uniform label prior."""
    predicted_labels: np.ndarray
    """int64 [N]: the most likely label."""
    label_log_likelihood: np.ndarray | None
    """float32 [N]: the bound under the given label (None when no labels were given)."""
    model_name: str
    model_version: str
    seed: int
    samples: int


def _fill_images(request: object, images: Images) -> None:
    if isinstance(images, np.ndarray):
        array = images
        if array.dtype not in (np.uint8, np.float32):
            array = array.astype(np.float32)
        request.images.CopyFrom(numpy_to_tensor(array))  # type: ignore[attr-defined]
    else:
        request.png.extend(bytes(data) for data in images)  # type: ignore[attr-defined]


def _ints(values: Sequence[int] | np.ndarray | None) -> list[int]:
    return [] if values is None else [int(value) for value in values]


def encode_request(
    images: Images, labels: Sequence[int] | np.ndarray, model_version: str | None
) -> pb.EncodeRequest:
    request = pb.EncodeRequest(labels=_ints(labels), model_version=model_version or "")
    _fill_images(request, images)
    return request


def reconstruct_request(
    images: Images,
    labels: Sequence[int] | np.ndarray,
    encoding: Encoding,
    model_version: str | None,
    omit_latents: bool,
) -> pb.ReconstructRequest:
    request = pb.ReconstructRequest(
        labels=_ints(labels),
        model_version=model_version or "",
        encoding=encoding.proto,  # type: ignore[arg-type]
        omit_latents=omit_latents,
    )
    _fill_images(request, images)
    return request


def restyle_request(
    images: Images,
    labels: Sequence[int] | np.ndarray,
    target_labels: Sequence[int] | np.ndarray,
    encoding: Encoding,
    model_version: str | None,
    omit_latents: bool,
) -> pb.RestyleRequest:
    request = pb.RestyleRequest(
        labels=_ints(labels),
        target_labels=_ints(target_labels),
        model_version=model_version or "",
        encoding=encoding.proto,  # type: ignore[arg-type]
        omit_latents=omit_latents,
    )
    _fill_images(request, images)
    return request


def score_request(
    images: Images,
    labels: Sequence[int] | np.ndarray | None,
    samples: int,
    seed: int | None,
    model_version: str | None,
) -> pb.ScoreRequest:
    request = pb.ScoreRequest(
        labels=_ints(labels), samples=int(samples), model_version=model_version or ""
    )
    if seed is not None:
        request.seed = int(seed)
    _fill_images(request, images)
    return request


def encode_result(response: pb.EncodeResponse) -> EncodeResult:
    return EncodeResult(
        mean=tensor_to_numpy(response.mean),
        log_variance=tensor_to_numpy(response.log_variance),
        labels=np.asarray(response.labels, dtype=np.int64),
        model_name=response.model_name,
        model_version=response.model_version,
    )


def score_result(response: pb.ScoreResponse) -> ScoreResult:
    given = None
    if len(response.label_log_likelihood):
        given = np.asarray(response.label_log_likelihood, dtype=np.float32)
    return ScoreResult(
        log_likelihood=tensor_to_numpy(response.log_likelihood),
        label_probabilities=tensor_to_numpy(response.label_probabilities),
        predicted_labels=np.asarray(response.predicted_labels, dtype=np.int64),
        label_log_likelihood=given,
        model_name=response.model_name,
        model_version=response.model_version,
        seed=int(response.seed),
        samples=int(response.samples),
    )
