"""The CVAE encoder as ONNX: image float32 [N, H, W] in [0, 1], label int64 [N] ->
mean, log_variance float32 [N, latent] of Q(z|x,y) in the space the served decoder takes.

It is the model's `ServedEncoder` (training/model.py): with a flow prior, Q is carried into the
noise space of the decoder graph, so an encoded mean decodes back through model.onnx.
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
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxExportError(f"onnx.checker rejected the encoder graph: {error}") from error
    expected_inputs = {
        INPUT_IMAGE: (onnx.TensorProto.FLOAT, [BATCH_AXIS, *image_shape]),
        INPUT_LABEL: (onnx.TensorProto.INT64, [BATCH_AXIS]),
    }
    actual = {value.name: _signature(value) for value in model.graph.input}
    if actual != expected_inputs:
        raise OnnxExportError(f"encoder inputs are {actual}, expected {expected_inputs}")
    expected_outputs = {
        name: (onnx.TensorProto.FLOAT, [BATCH_AXIS, latent_dim])
        for name in (OUTPUT_MEAN, OUTPUT_LOG_VARIANCE)
    }
    outputs = {value.name: _signature(value) for value in model.graph.output}
    if outputs != expected_outputs:
        raise OnnxExportError(f"encoder outputs are {outputs}, expected {expected_outputs}")


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
