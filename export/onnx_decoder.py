"""The CVAE decoder as ONNX: z float32 [N, latent], label int64 [N] -> image float32 [N, H, W].

torch 2.13's exporter is the dynamo one (`torch.onnx.export(..., dynamo=True)`, built on
torch.export and onnxscript); the batch axis is a `torch.export.Dim`, so every graph input and
output carries the symbolic dimension "batch".
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

_LOGGER = logging.getLogger(__name__)

OPSET = 18
INPUT_LATENT = "z"
INPUT_LABEL = "label"
OUTPUT_IMAGE = "image"
BATCH_AXIS = "batch"
PARITY_TOLERANCE = 1e-5  # max |onnxruntime - torch| accepted on any pixel
# the exporter's helpers log every graph pass at INFO and absent torchvision ops as warnings
_CHATTY_LOGGERS = {
    "onnx_ir": logging.WARNING,
    "onnxscript": logging.WARNING,
    "torch.onnx": logging.ERROR,
}


class OnnxExportError(RuntimeError):
    """The decoder could not be exported, or the exported graph is not what the contract says."""


def export_graph(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    path: Path,
    *,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """Export `module` (every input batch-major) to `path` as one self-contained ONNX file,
    without the exporter's per-node source metadata (stack traces name the build machine's
    paths); returns the saved graph."""
    module = module.eval()
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    try:
        with warnings.catch_warnings(), _quiet_exporter_logs():
            # torch 2.13's exporter warns about its own internals (pytree LeafSpec, axis names)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            program = torch.onnx.export(
                module,
                example,
                input_names=input_names,
                output_names=output_names,
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=tuple({0: batch} for _ in example),  # by position
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; none is recoverable here
        raise OnnxExportError(f"torch.onnx.export failed: {error}") from error
    if program is None:
        raise OnnxExportError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    graph = strip_source_metadata(onnx.load(str(path)))
    onnx.save(graph, str(path))
    return graph


def strip_source_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the metadata torch's exporter attaches to nodes and values (stack traces with the
    source files' absolute paths, FX node text, name scopes): the graph's computation and its
    model-level metadata_props stay."""
    graphs: list[Any] = [model.graph, *model.functions]
    while graphs:
        graph = graphs.pop()
        nodes = graph.node
        for node in nodes:
            del node.metadata_props[:]
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
        for values in (getattr(graph, "input", []), getattr(graph, "output", [])):
            for value in values:
                if hasattr(value, "metadata_props"):
                    del value.metadata_props[:]
        for value in getattr(graph, "value_info", []):
            del value.metadata_props[:]
        for tensor in getattr(graph, "initializer", []):
            del tensor.metadata_props[:]
        if hasattr(graph, "metadata_props"):
            del graph.metadata_props[:]
    return model


def export_decoder(decoder: nn.Module, latent_dim: int, path: Path, *, opset: int = OPSET) -> None:
    """Write the decoder (z, label) -> image to `path` as one ONNX file, then check it."""
    example = (torch.zeros(2, latent_dim), torch.zeros(2, dtype=torch.int64))
    graph = export_graph(
        decoder, example, [INPUT_LATENT, INPUT_LABEL], [OUTPUT_IMAGE], path, opset=opset
    )
    check_graph(graph, latent_dim)


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    previous = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    for name, level in _CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


def check_graph(model: onnx.ModelProto, latent_dim: int) -> None:
    """onnx.checker plus the contract: input and output names, dtypes and a dynamic batch axis."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxExportError(f"onnx.checker rejected the graph: {error}") from error
    expected = {
        INPUT_LATENT: (onnx.TensorProto.FLOAT, [BATCH_AXIS, latent_dim]),
        INPUT_LABEL: (onnx.TensorProto.INT64, [BATCH_AXIS]),
    }
    actual = {value.name: _signature(value) for value in model.graph.input}
    if actual != expected:
        raise OnnxExportError(f"graph inputs are {actual}, expected {expected}")
    outputs = [value.name for value in model.graph.output]
    if outputs != [OUTPUT_IMAGE]:
        raise OnnxExportError(f"graph outputs are {outputs}, expected [{OUTPUT_IMAGE!r}]")
    elem_type, dims = _signature(model.graph.output[0])
    if elem_type != onnx.TensorProto.FLOAT or len(dims) != 3 or dims[0] != BATCH_AXIS:
        raise OnnxExportError(
            f"output {OUTPUT_IMAGE!r} is {elem_type} {dims}, expected float [N, H, W]"
        )


def _signature(value: onnx.ValueInfoProto) -> tuple[int, list[int | str]]:
    tensor = value.type.tensor_type
    dims: list[int | str] = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
    return tensor.elem_type, dims


def parity_error(
    decoder: nn.Module, path: Path, latent_dim: int, num_classes: int, *, batch: int = 64
) -> float:
    """Max absolute difference between onnxruntime on `path` and the torch decoder."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((batch, latent_dim)).astype(np.float32)
    labels = (np.arange(batch) % num_classes).astype(np.int64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (images,) = session.run([OUTPUT_IMAGE], {INPUT_LATENT: z, INPUT_LABEL: labels})
    with torch.no_grad():
        expected = decoder.eval()(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
    if images.shape != expected.shape:
        raise OnnxExportError(f"onnxruntime gives {images.shape}, torch gives {expected.shape}")
    return float(np.abs(images - expected).max())


def check_parity(decoder: nn.Module, path: Path, latent_dim: int, num_classes: int) -> None:
    error = parity_error(decoder, path, latent_dim, num_classes)
    if not error <= PARITY_TOLERANCE:
        raise OnnxExportError(
            f"the ONNX graph differs from the torch decoder by {error:.3g} (> {PARITY_TOLERANCE})"
        )
    _LOGGER.info("onnxruntime vs torch: max abs difference %.3g", error)


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain (ai.onnx) opset the graph was written for."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise OnnxExportError("the graph imports no ai.onnx opset")
