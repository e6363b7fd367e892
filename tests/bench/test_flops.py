"""bench/flops.py: multiply-accumulates of a real ONNX graph, checked against hand counts."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.flops import _observed_shapes, count


def _decoder_like() -> onnx.ModelProto:
    """z [N, 6] -> Gemm to 8*7*7 -> Reshape [N, 8, 7, 7] -> ConvTranspose 8->4 (k4 s2 p1) to
    14x14 -> Conv 4->1 (k3 p1) -> MatMul with a [14, 5] matrix: [N, 1, 14, 5]."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Gemm", ["z", "w_fc", "b_fc"], ["fc"], transB=1, name="fc"),
        helper.make_node("Reshape", ["fc", "shape"], ["grid"], name="reshape"),
        helper.make_node(
            "ConvTranspose",
            ["grid", "w_up"],
            ["up"],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            kernel_shape=[4, 4],
            name="up",
        ),
        helper.make_node("Conv", ["up", "w_conv"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("MatMul", ["conv", "w_mm"], ["image"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 14, 5])],
        initializer=[
            weight("w_fc", 8 * 7 * 7, 6),
            weight("b_fc", 8 * 7 * 7),
            numpy_helper.from_array(np.array([-1, 8, 7, 7], dtype=np.int64), "shape"),
            weight("w_up", 8, 4, 4, 4),
            weight("w_conv", 1, 4, 3, 3),
            weight("w_mm", 14, 5),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_each_layer_is_counted_by_hand() -> None:
    cost = count(_decoder_like())
    by_name = {layer.name: layer.macs for layer in cost.layers}
    assert by_name == {
        "fc": 6 * 392,  # [1, 6] x [6, 392]
        "up": 8 * 7 * 7 * 4 * 4 * 4,  # every input element scatters into C_out * k * k
        "conv": 1 * 14 * 14 * 4 * 3 * 3,  # every output element gathers C_in * k * k
        "mm": 14 * 5 * 14,  # [1, 1, 14, 14] x [14, 5]
    }
    assert cost.uncounted == ()
    assert cost.flops_per_image == 2 * sum(by_name.values())


def test_shapes_inference_cannot_tell_are_observed_in_one_run() -> None:
    shapes = _observed_shapes(_decoder_like(), ["grid", "up", "conv"])
    assert shapes == {"grid": (1, 8, 7, 7), "up": (1, 4, 14, 14), "conv": (1, 1, 14, 14)}
