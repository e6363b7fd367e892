"""The model's Open Inference Protocol signature: wire tensors and parameters -> a checked job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelrepo import GraphSpec, ModelSpec
from service.errors import InvalidArgument
from service.generator import PixelFormat
from service.oip import signature
from service.oip.signature import InputTensor, RequestedOutput

_SPEC = ModelSpec(
    name="m", version="1", latent_dim=4, num_classes=10, class_names=tuple("0123456789"),
    image_shape=(28, 28), folder=Path("m/1"),
    decoder=GraphSpec("decoder", "model.onnx", "", {"latent": "z", "label": "label"},
                      {"image": "image"}),
)  # fmt: skip


def _label(values: list[int], datatype: str = "INT64") -> InputTensor:
    array = np.array(values, dtype=signature.NUMPY_DTYPES[datatype])
    return InputTensor("label", datatype, (len(values),), array)


def _decode(*inputs: InputTensor, outputs: tuple[RequestedOutput, ...] = (), **parameters: object):  # type: ignore[no-untyped-def]
    return signature.decode_call(inputs, parameters, outputs, _SPEC, max_images=8)  # type: ignore[arg-type]


def test_int32_labels_seed_and_temperature_make_a_float32_job() -> None:
    call = _decode(_label([3, 1], "INT32"), seed=7, temperature=0.5)
    assert call.job.labels.dtype == np.int64 and call.job.labels.tolist() == [3, 1]
    assert (call.job.seed, call.job.temperature, call.job.latents) == (7, 0.5, None)
    assert (call.output_datatype, call.job.pixel_format) == ("FP32", PixelFormat.FLOAT32)


def test_uint8_is_asked_by_the_outputs_or_the_requests_parameter() -> None:
    asked = RequestedOutput("image", {"datatype": "UINT8"})
    assert _decode(_label([1]), outputs=(asked,)).job.pixel_format is PixelFormat.UINT8
    assert _decode(_label([1]), datatype="UINT8").output_datatype == "UINT8"
    with pytest.raises(InvalidArgument, match="disagree"):
        _decode(_label([1]), outputs=(asked,), datatype="FP32")


def test_given_latents_are_reshaped_rows() -> None:
    z = InputTensor("z", "FP32", (2, 4), np.arange(8, dtype=np.float32))
    latents = _decode(_label([1, 2]), z).job.latents
    assert latents is not None and latents.shape == (2, 4) and latents[1, 0] == 4.0


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((InputTensor("label", "INT64", (3,), np.zeros(2, np.int64)),), "label: 2 values"),
        ((_label([]),), "label: must hold at least one"),
        ((_label([1] * 9),), "label: 9 images asked; at most 8"),
        ((_label([1]), _label([2])), "inputs: label is given twice"),
        ((_label([1]), InputTensor("z", "FP32", (1, 4), np.zeros(3, np.float32))), "z: 3 values"),
    ],
)
def test_each_refusal_names_its_input(inputs: tuple[InputTensor, ...], message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        _decode(*inputs)
    assert str(raised.value).startswith(message)


def test_unknown_outputs_are_refused_and_unknown_parameters_ignored() -> None:
    with pytest.raises(InvalidArgument, match=r"^outputs: 'latents' is not an output"):
        _decode(_label([1]), outputs=(RequestedOutput("latents", {}),))
    assert _decode(_label([1]), binary_data_output=True).job.seed is None


def test_the_image_output_is_fp32_or_rounded_uint8() -> None:
    images = np.array([[[0.0, 0.5, 1.0, 2.0]]], dtype=np.float32)
    assert signature.image_output(images, "FP32").dtype == np.dtype("<f4")
    assert signature.image_output(images, "UINT8").tolist() == [[[0, 128, 255, 255]]]
