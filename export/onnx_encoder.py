"""The CVAE encoder as ONNX: image float32 [N, H, W] in [0, 1], label int64 [N] ->
mean, log_variance float32 [N, latent] of Q(z|x,y) in the space the served decoder takes.

It is the model's `ServedEncoder` (training/model.py): with a flow prior, Q is carried into the
noise space of the decoder graph, so an encoded mean decodes back through model.onnx.

With a flow prior a second graph, the posterior sampler (`ServedPosterior`), goes beside it:
image, label and noise float32 [N, latent] -> latent float32 [N, latent] (a sample of Q carried
exactly into the decoder's space) and log_density float32 [N] (its log density there), the
proposal of Score's importance-weighted bound.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from export.onnx_decoder import (
    BATCH_AXIS,
    OPSET,
    OnnxExportError,
    _signature,
    export_graph,
)

_LOGGER = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
INPUT_IMAGE = "image"
INPUT_LABEL = "label"
OUTPUT_MEAN = "mean"
OUTPUT_LOG_VARIANCE = "log_variance"
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted on any mean or log-variance
POSTERIOR_FILE = "posterior.onnx"
INPUT_NOISE = "noise"
OUTPUT_LATENT = "latent"
OUTPUT_LOG_DENSITY = "log_density"
# log_density sums latent_dim terms of a few nats and a log-determinant: relative to its size
POSTERIOR_LOG_DENSITY_TOLERANCE = 1e-4


def export_encoder(
    encoder: nn.Module,
    image_shape: tuple[int, int],
    latent_dim: int,
    path: Path,
    *,
    opset: int = OPSET,
) -> None:
    """Write the served encoder to `path` as one self-contained ONNX file, then check it."""
    example = (torch.rand(2, *image_shape), torch.zeros(2, dtype=torch.int64))
    graph = export_graph(
        encoder,
        example,
        [INPUT_IMAGE, INPUT_LABEL],
        [OUTPUT_MEAN, OUTPUT_LOG_VARIANCE],
        path,
        opset=opset,
    )
    check_encoder_graph(graph, image_shape, latent_dim)


def check_encoder_graph(
    model: onnx.ModelProto, image_shape: tuple[int, int], latent_dim: int
) -> None:
    """onnx.checker plus the contract: input and output names, dtypes and a dynamic batch axis."""
    check_contract(
        model,
        "encoder",
        {
            INPUT_IMAGE: (onnx.TensorProto.FLOAT, [BATCH_AXIS, *image_shape]),
            INPUT_LABEL: (onnx.TensorProto.INT64, [BATCH_AXIS]),
        },
        {
            name: (onnx.TensorProto.FLOAT, [BATCH_AXIS, latent_dim])
            for name in (OUTPUT_MEAN, OUTPUT_LOG_VARIANCE)
        },
    )


def check_contract(
    model: onnx.ModelProto,
    what: str,
    inputs: dict[str, tuple[int, list[object]]],
    outputs: dict[str, tuple[int, list[object]]],
) -> None:
    """onnx.checker, then each input's and output's (dtype, shape) by name."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxExportError(f"onnx.checker rejected the {what} graph: {error}") from error
    actual = {value.name: _signature(value) for value in model.graph.input}
    if actual != inputs:
        raise OnnxExportError(f"{what} inputs are {actual}, expected {inputs}")
    produced = {value.name: _signature(value) for value in model.graph.output}
    if produced != outputs:
        raise OnnxExportError(f"{what} outputs are {produced}, expected {outputs}")


def encoder_parity_error(
    encoder: nn.Module, path: Path, images: np.ndarray, labels: np.ndarray
) -> float:
    """Max absolute difference of mean and log-variance, onnxruntime on `path` vs torch."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        INPUT_IMAGE: np.ascontiguousarray(images, dtype=np.float32),
        INPUT_LABEL: np.ascontiguousarray(labels, dtype=np.int64),
    }
    mean, log_variance = session.run([OUTPUT_MEAN, OUTPUT_LOG_VARIANCE], feeds)
    with torch.no_grad():
        expected = encoder.eval()(
            torch.from_numpy(feeds[INPUT_IMAGE]), torch.from_numpy(feeds[INPUT_LABEL])
        )
    errors = [
        float(np.abs(actual - want.numpy()).max())
        for actual, want in zip((mean, log_variance), expected, strict=True)
    ]
    return max(errors)


def check_encoder_parity(
    encoder: nn.Module, path: Path, images: np.ndarray, labels: np.ndarray
) -> float:
    error = encoder_parity_error(encoder, path, images, labels)
    if not error <= PARITY_TOLERANCE:
        raise OnnxExportError(
            f"the ONNX encoder differs from the torch encoder by {error:.3g} (> {PARITY_TOLERANCE})"
        )
    _LOGGER.info("encoder, onnxruntime vs torch: max abs difference %.3g", error)
    return error


def export_posterior(
    posterior: nn.Module,
    image_shape: tuple[int, int],
    latent_dim: int,
    path: Path,
    *,
    opset: int = OPSET,
) -> None:
    """Write the served posterior sampler to `path` as one ONNX file, then check it."""
    example = (
        torch.rand(2, *image_shape),
        torch.zeros(2, dtype=torch.int64),
        torch.randn(2, latent_dim),
    )
    graph = export_graph(
        posterior,
        example,
        [INPUT_IMAGE, INPUT_LABEL, INPUT_NOISE],
        [OUTPUT_LATENT, OUTPUT_LOG_DENSITY],
        path,
        opset=opset,
    )
    check_posterior_graph(graph, image_shape, latent_dim)


def check_posterior_graph(
    model: onnx.ModelProto, image_shape: tuple[int, int], latent_dim: int
) -> None:
    """onnx.checker plus the posterior sampler's names, dtypes and dynamic batch axis."""
    check_contract(
        model,
        "posterior",
        {
            INPUT_IMAGE: (onnx.TensorProto.FLOAT, [BATCH_AXIS, *image_shape]),
            INPUT_LABEL: (onnx.TensorProto.INT64, [BATCH_AXIS]),
            INPUT_NOISE: (onnx.TensorProto.FLOAT, [BATCH_AXIS, latent_dim]),
        },
        {
            OUTPUT_LATENT: (onnx.TensorProto.FLOAT, [BATCH_AXIS, latent_dim]),
            OUTPUT_LOG_DENSITY: (onnx.TensorProto.FLOAT, [BATCH_AXIS]),
        },
    )


def posterior_parity_error(
    posterior: nn.Module, path: Path, images: np.ndarray, labels: np.ndarray, noise: np.ndarray
) -> tuple[float, float]:
    """(max |latent difference|, max relative log_density difference), onnxruntime vs torch."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        INPUT_IMAGE: np.ascontiguousarray(images, dtype=np.float32),
        INPUT_LABEL: np.ascontiguousarray(labels, dtype=np.int64),
        INPUT_NOISE: np.ascontiguousarray(noise, dtype=np.float32),
    }
    latent, log_density = session.run([OUTPUT_LATENT, OUTPUT_LOG_DENSITY], feeds)
    with torch.no_grad():
        want_latent, want_density = posterior.eval()(
            *(torch.from_numpy(feeds[name]) for name in (INPUT_IMAGE, INPUT_LABEL, INPUT_NOISE))
        )
    density = want_density.numpy()
    relative = np.abs(log_density - density) / np.maximum(1.0, np.abs(density))
    return float(np.abs(latent - want_latent.numpy()).max()), float(relative.max())


def check_posterior_parity(
    posterior: nn.Module, path: Path, images: np.ndarray, labels: np.ndarray, noise: np.ndarray
) -> None:
    latent_error, density_error = posterior_parity_error(posterior, path, images, labels, noise)
    if not (latent_error <= PARITY_TOLERANCE and density_error <= POSTERIOR_LOG_DENSITY_TOLERANCE):
        raise OnnxExportError(
            f"the ONNX posterior differs from torch's: latent by {latent_error:.3g} "
            f"(> {PARITY_TOLERANCE}?), log_density by {density_error:.3g} relative "
            f"(> {POSTERIOR_LOG_DENSITY_TOLERANCE}?)"
        )
    _LOGGER.info(
        "posterior, onnxruntime vs torch: latent %.3g, log_density %.3g relative",
        latent_error,
        density_error,
    )
