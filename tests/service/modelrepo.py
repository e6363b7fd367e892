"""Build real model repositories for tests: a tiny ONNX decoder plus a matching model.json.

The decoder is a real graph run by real onnxruntime:
    one-hot(label) ++ z -> Gemm -> Relu -> Gemm -> Sigmoid -> Reshape (N, H, W)
with numpy weights from a seed. With `encoder=True` the version also ships a tiny encoder
Q(z|x,y) (encoder.onnx, model.json "encoder"):
    flatten(image) ++ one-hot(label) -> Gemm -> Relu -> {Gemm -> mean, Gemm -> log_variance}
`write_version` can also write the broken variants the service must refuse (truncated ONNX,
wrong input names, a wrong output shape, a sha256 mismatch, ...).

Reusable by any test: `from tests.service.modelrepo import write_version`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import modelrepo

OPSET = 18
BREAKAGES = (
    "truncated_onnx",  # model.onnx cut in half (sha256 in model.json matches the cut file)
    "sha_mismatch",  # model.json's onnx_sha256 is not the file's
    "wrong_input_names",  # the graph's inputs are not the names model.json gives
    "wrong_output_shape",  # the graph emits (N, H*W) while model.json says (H, W)
    "bad_json",  # model.json is not JSON
    "missing_key",  # model.json lacks latent_dim
    "missing_onnx",  # no model.onnx at all
    "encoder_sha_mismatch",  # model.json's encoder.onnx_sha256 is not encoder.onnx's
    "encoder_wrong_output_shape",  # the encoder emits (N, latent_dim + 1)
    "encoder_missing_file",  # model.json names an encoder.onnx that is not there
)
ENCODER_BREAKAGES = tuple(name for name in BREAKAGES if name.startswith("encoder_"))


@dataclass(frozen=True)
class DecoderSpec:
    """Sizes of the test decoder."""

    latent_dim: int = 16
    num_classes: int = 10
    image_shape: tuple[int, int] = (28, 28)
    hidden: int = 64
    seed: int = 0
    metrics: dict[str, float] = field(default_factory=lambda: {"label_accuracy": 0.5})


def build_decoder(spec: DecoderSpec, input_names: tuple[str, str] = ("z", "label")) -> bytes:
    """Serialized ONNX model: z float32 (N, latent_dim), label int64 (N,) -> image (N, H, W)."""
    rng = np.random.default_rng(spec.seed)
    height, width = spec.image_shape
    pixels = height * width
    width_in = spec.num_classes + spec.latent_dim
    z_name, label_name = input_names
    initializers = [
        numpy_helper.from_array(np.array(spec.num_classes, dtype=np.int64), "depth"),
        numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), "one_hot_values"),
        numpy_helper.from_array(
            (rng.standard_normal((width_in, spec.hidden)) / np.sqrt(width_in)).astype(np.float32),
            "w1",
        ),
        numpy_helper.from_array(np.zeros(spec.hidden, dtype=np.float32), "b1"),
        numpy_helper.from_array(
            (rng.standard_normal((spec.hidden, pixels)) / np.sqrt(spec.hidden)).astype(np.float32),
            "w2",
        ),
        numpy_helper.from_array(rng.standard_normal(pixels).astype(np.float32) * 0.1, "b2"),
        numpy_helper.from_array(np.array([-1, height, width], dtype=np.int64), "image_shape"),
    ]
    nodes = [
        helper.make_node("OneHot", [label_name, "depth", "one_hot_values"], ["one_hot"], axis=-1),
        helper.make_node("Concat", ["one_hot", z_name], ["joined"], axis=1),
        helper.make_node("Gemm", ["joined", "w1", "b1"], ["hidden_pre"]),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["pixels"]),
        helper.make_node("Reshape", ["pixels", "image_shape"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cvae_decoder",
        inputs=[
            helper.make_tensor_value_info(z_name, TensorProto.FLOAT, ["N", spec.latent_dim]),
            helper.make_tensor_value_info(label_name, TensorProto.INT64, ["N"]),
        ],
        outputs=[helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", height, width])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def build_encoder(spec: DecoderSpec, extra_output_columns: int = 0) -> bytes:
    """Serialized ONNX model: image float32 (N, H, W), label int64 (N,) -> mean, log_variance
    float32 (N, latent_dim) each (log_variance kept within about [-1.5, 0.5] by tanh)."""
    rng = np.random.default_rng(spec.seed + 1000)
    height, width = spec.image_shape
    width_in = height * width + spec.num_classes
    out = spec.latent_dim + extra_output_columns

    def weights(rows: int, cols: int, name: str) -> onnx.TensorProto:
        value = rng.standard_normal((rows, cols)) / np.sqrt(rows)
        return numpy_helper.from_array(value.astype(np.float32), name)

    initializers = [
        numpy_helper.from_array(np.array(spec.num_classes, dtype=np.int64), "depth"),
        numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), "one_hot_values"),
        numpy_helper.from_array(np.array([-1, height * width], dtype=np.int64), "flat_shape"),
        weights(width_in, spec.hidden, "w1"),
        numpy_helper.from_array(np.zeros(spec.hidden, dtype=np.float32), "b1"),
        weights(spec.hidden, out, "w_mean"),
        numpy_helper.from_array(np.zeros(out, dtype=np.float32), "b_mean"),
        weights(spec.hidden, out, "w_var"),
        numpy_helper.from_array(np.zeros(out, dtype=np.float32), "b_var"),
        numpy_helper.from_array(np.array(-0.5, dtype=np.float32), "var_shift"),
    ]
    nodes = [
        helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
        helper.make_node("OneHot", ["label", "depth", "one_hot_values"], ["one_hot"], axis=-1),
        helper.make_node("Concat", ["flat", "one_hot"], ["joined"], axis=1),
        helper.make_node("Gemm", ["joined", "w1", "b1"], ["hidden_pre"]),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w_mean", "b_mean"], ["mean"]),
        helper.make_node("Gemm", ["hidden", "w_var", "b_var"], ["var_pre"]),
        helper.make_node("Tanh", ["var_pre"], ["var_tanh"]),
        helper.make_node("Add", ["var_tanh", "var_shift"], ["log_variance"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cvae_encoder",
        inputs=[
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", height, width]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        outputs=[
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", out]),
            helper.make_tensor_value_info("log_variance", TensorProto.FLOAT, ["N", out]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _flat_output_decoder(spec: DecoderSpec) -> bytes:
    """Like build_decoder but the output is (N, H*W): the warm-up shape check must catch it."""
    model = onnx.load_from_string(build_decoder(spec))
    height, width = spec.image_shape
    for initializer in model.graph.initializer:
        if initializer.name == "image_shape":
            initializer.CopyFrom(
                numpy_helper.from_array(
                    np.array([-1, height * width], dtype=np.int64), "image_shape"
                )
            )
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", height * width])
    )
    return model.SerializeToString()


def model_document(spec: DecoderSpec, name: str, version: str, onnx_bytes: bytes) -> dict[str, Any]:
    """The model.json of docs/model-repository.md for this decoder."""
    decoder = modelrepo.GraphSpec(
        role=modelrepo.DECODER,
        file=modelrepo.DECODER_FILE,
        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        inputs={"latent": "z", "label": "label"},
        outputs={"image": "image"},
    )
    return modelrepo.model_document(
        name=name,
        version=version,
        latent_dim=spec.latent_dim,
        num_classes=spec.num_classes,
        class_names=[str(index) for index in range(spec.num_classes)],
        image_shape=spec.image_shape,
        decoder=decoder,
        opset=OPSET,
        training_config={"note": "test decoder, not trained"},
        metrics=dict(spec.metrics),
        created_at="2026-11-26T09:00:00Z",
    )


def write_version(
    root: Path,
    version: str = "1",
    *,
    name: str = "cvae-mnist",
    spec: DecoderSpec | None = None,
    breakage: str | None = None,
    encoder: bool = False,
) -> Path:
    """Write root/name/version/{model.onnx, model.json} (and encoder.onnx with `encoder`, or
    with an encoder breakage); `breakage` picks one of BREAKAGES."""
    spec = spec or DecoderSpec()
    if breakage is not None and breakage not in BREAKAGES:
        raise ValueError(f"unknown breakage {breakage!r}; one of {BREAKAGES}")
    folder = root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    if breakage == "wrong_input_names":
        onnx_bytes = build_decoder(spec, input_names=("latent_z", "digit"))
    elif breakage == "wrong_output_shape":
        onnx_bytes = _flat_output_decoder(spec)
    else:
        onnx_bytes = build_decoder(spec)
    if breakage == "truncated_onnx":
        onnx_bytes = onnx_bytes[: len(onnx_bytes) // 2]
    document = model_document(spec, name, version, onnx_bytes)
    if breakage == "sha_mismatch":
        document["onnx_sha256"] = hashlib.sha256(b"something else").hexdigest()
    if breakage == "missing_key":
        del document["latent_dim"]
    if encoder or breakage in ENCODER_BREAKAGES:
        extra = 1 if breakage == "encoder_wrong_output_shape" else 0
        encoder_bytes = build_encoder(spec, extra_output_columns=extra)
        document["encoder"] = {
            "file": "encoder.onnx",
            "onnx_sha256": hashlib.sha256(
                b"other" if breakage == "encoder_sha_mismatch" else encoder_bytes
            ).hexdigest(),
            "inputs": {"image": "image", "label": "label"},
            "outputs": {"mean": "mean", "log_variance": "log_variance"},
        }
        if breakage != "encoder_missing_file":
            (folder / "encoder.onnx").write_bytes(encoder_bytes)
    if breakage != "missing_onnx":
        (folder / "model.onnx").write_bytes(onnx_bytes)
    text = json.dumps(document, indent=2)
    if breakage == "bad_json":
        text = text[: len(text) // 2]
    (folder / "model.json").write_text(text, encoding="utf-8")
    return folder
