"""Multiply-accumulates per image of an ONNX graph, counted from its Conv/ConvTranspose/Gemm/MatMul.

Shapes come from ONNX shape inference with the batch axis of every input fixed to 1, so the
count is per image; where inference cannot tell a shape (label-dependent slicing defeats it), one
onnxruntime run of a single all-zeros example with those tensors exposed as outputs does.
Element-wise work (activations, FiLM, sigmoid) is left out: it is a few percent of the total in
a conv decoder and costs memory traffic rather than arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, shape_inference

_COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerCost:
    name: str
    op_type: str
    macs: int


@dataclass(frozen=True)
class GraphCost:
    layers: tuple[LayerCost, ...]
    uncounted: tuple[str, ...]
    """Nodes of a counted type whose shapes inference could not tell."""

    @property
    def macs_per_image(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops_per_image(self) -> int:
        return 2 * self.macs_per_image


def _with_batch_of_one(model: onnx.ModelProto) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {tensor.name for tensor in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    for value in fixed.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    return fixed


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = shape_inference.infer_shapes(_with_batch_of_one(model), data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = tuple(dim.dim_value for dim in dims)
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    return shapes


def _observed_shapes(model: onnx.ModelProto, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Run one all-zeros example of batch 1 and read the shapes of the tensors `names`."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {value.name for value in probe.graph.output}
    probe.graph.output.extend(
        helper.make_empty_tensor_value_info(name) for name in names if name not in existing
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        dims = [1 if not isinstance(dim, int) else dim for dim in value.shape]
        dtype = np.int64 if "int64" in value.type else np.float32
        feeds[value.name] = np.zeros(dims, dtype=dtype)
    wanted = [name for name in names if name]
    results = session.run(wanted, feeds)
    return {name: tuple(array.shape) for name, array in zip(wanted, results, strict=True)}


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx.helper.get_attribute_value(attribute))
    return default


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    inputs = [shapes.get(name) for name in node.input[:2]]
    output = shapes.get(node.output[0])
    if any(shape is None for shape in inputs) or output is None:
        return None
    first, weight = inputs
    assert first is not None and weight is not None
    if node.op_type == "Conv":
        # weight (C_out, C_in / group, *kernel); each output element sums C_in/group * kernel
        return math.prod(output) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":
        # weight (C_in, C_out / group, *kernel); each input element scatters into that many
        return math.prod(first) * math.prod(weight[1:])
    if node.op_type == "Gemm":
        inner = first[0] if _attribute(node, "transA", 0) else first[1]
        return math.prod(output) * inner
    # MatMul: (..., M, K) x (..., K, N) -> (..., M, N)
    return math.prod(output) * first[-1]


def count(model: onnx.ModelProto) -> GraphCost:
    shapes = _shapes(model)
    missing = sorted(
        {
            name
            for node in model.graph.node
            if node.op_type in _COUNTED
            for name in (*node.input[:2], node.output[0])
            if name and name not in shapes
        }
    )
    if missing:
        shapes.update(_observed_shapes(model, missing))
    layers = []
    uncounted = []
    for node in model.graph.node:
        if node.op_type not in _COUNTED:
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            uncounted.append(node.name or node.op_type)
        else:
            layers.append(LayerCost(node.name or node.op_type, node.op_type, macs))
    return GraphCost(tuple(layers), tuple(uncounted))


def count_file(path: Path) -> GraphCost:
    return count(onnx.load(str(path)))
