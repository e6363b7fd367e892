"""Open Inference Protocol HTTP/JSON bodies <-> the signature's types (service.oip.signature).

JSON tensors carry their values in `data` (flat or nested, row-major). The binary tensor data
extension is read and written too, as tritonclient uses it by default: the body is the JSON
header (`Inference-Header-Content-Length` bytes) followed by each binary tensor in order, an
input's `parameters.binary_data_size` saying how many bytes are its. Outputs leave as binary when
the request's parameter `binary_data_output` or the output's parameter `binary_data` is true.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrepo import ModelSpec
from service.errors import InvalidArgument, brief
from service.generator import GeneratedImages
from service.oip import signature
from service.oip.signature import InputTensor, ParameterValue, RequestedOutput, TensorMetadata

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data_output"
BINARY_DATA = "binary_data"
TIMEOUT = "timeout"  # Triton's request parameter: microseconds the caller will wait


@dataclass(frozen=True)
class HttpInfer:
    """A decoded /infer body: the checked call and how to answer it."""

    call: signature.InferCall
    request_id: str
    binary_output: bool
    timeout_s: float | None


def decode_infer(
    body: bytes, header_length: str | None, spec: ModelSpec, max_images: int
) -> HttpInfer:
    document, binary = _split(body, header_length)
    if not isinstance(document, dict):
        raise InvalidArgument("request: the JSON body must be an object")
    parameters = _parameters(document.get("parameters"), "parameters")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidArgument("inputs: must be a list of tensors")
    inputs = []
    offset = 0
    for index, raw in enumerate(raw_inputs):
        tensor, offset = _input(raw, index, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidArgument(
            f"request: {len(binary) - offset} bytes of binary data follow the inputs unclaimed"
        )
    outputs = [_output(raw, index) for index, raw in enumerate(_list(document, "outputs"))]
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"id: {brief(request_id)} must be a string")
    binary_output = parameters.get(BINARY_OUTPUT) is True or any(
        output.parameters.get(BINARY_DATA) is True for output in outputs
    )
    call = signature.decode_call(inputs, parameters, outputs, spec, max_images)
    return HttpInfer(call, request_id, binary_output, _timeout(parameters.get(TIMEOUT)))


def encode_infer(result: GeneratedImages, infer: HttpInfer) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    spec = result.runtime.spec
    image = signature.image_output(result.images, infer.call.output_datatype)
    output: dict[str, Any] = {
        "name": signature.IMAGE,
        "datatype": infer.call.output_datatype,
        "shape": list(image.shape),
    }
    raw = b""
    if infer.binary_output:
        raw = image.tobytes()
        output["parameters"] = {BINARY_SIZE: len(raw)}
    else:
        output["data"] = image.reshape(-1).tolist()
    document: dict[str, Any] = {
        "model_name": spec.name,
        "model_version": spec.version,
        "outputs": [output],
    }
    if infer.request_id:
        document["id"] = infer.request_id
    if result.seed is not None:
        document["parameters"] = {signature.SEED: result.seed}
    header = json.dumps(document, separators=(",", ":")).encode()
    if not raw:
        return header, None
    return header + raw, len(header)


def model_metadata(spec: ModelSpec, versions: Sequence[str]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "versions": list(versions),
        "platform": signature.PLATFORM,
        "inputs": [_tensor_metadata(tensor) for tensor in signature.inputs_of(spec)],
        "outputs": [_tensor_metadata(tensor) for tensor in signature.outputs_of(spec)],
        "parameters": dict(sorted(spec.metrics.items())),  # the model card's metrics
    }


def _tensor_metadata(tensor: TensorMetadata) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def _split(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            size = -1
        if not 0 <= size <= len(body):
            raise InvalidArgument(
                f"{HEADER_LENGTH}: {brief(header_length)} must be a byte count within the "
                f"body's {len(body)} bytes"
            )
    try:
        return json.loads(body[:size]), body[size:]
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgument(f"request: not valid JSON ({error})") from None


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise InvalidArgument(f"{key}: must be a list")
    return value


def _parameters(raw: Any, where: str) -> dict[str, ParameterValue]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(value, bool | int | float | str) for value in raw.values()
    ):
        raise InvalidArgument(f"{where}: must be an object of booleans, numbers and strings")
    return dict(raw)


def _input(raw: Any, index: int, binary: bytes, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidArgument(f"inputs[{index}]: must be an object with a name")
    name = raw["name"]
    datatype, shape = raw.get("datatype"), raw.get("shape")
    if not isinstance(datatype, str):
        raise InvalidArgument(f"{brief(name)}.datatype: must be a string such as INT64")
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) for dim in shape
    ):
        raise InvalidArgument(f"{brief(name)}.shape: {brief(shape)} must be a list of integers")
    dtype = signature.NUMPY_DTYPES.get(datatype)
    if dtype is None or datatype == "UINT8":
        raise InvalidArgument(
            f"{brief(name)}.datatype: {brief(datatype)} is not one this model takes "
            "(INT32, INT64, FP32)"
        )
    parameters = _parameters(raw.get("parameters"), f"{brief(name)}.parameters")
    size = parameters.get(BINARY_SIZE)
    if size is not None:
        left = len(binary) - offset
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= left:
            raise InvalidArgument(
                f"{brief(name)}.parameters.{BINARY_SIZE}: {brief(size)} bytes are not there "
                f"({left} binary bytes left)"
            )
        if size % dtype.itemsize:
            raise InvalidArgument(
                f"{brief(name)}: {size} binary bytes is not a whole number of {datatype} values"
            )
        values = np.frombuffer(binary, dtype=dtype, count=size // dtype.itemsize, offset=offset)
        return InputTensor(name, datatype, tuple(shape), values), offset + size
    values = _json_values(raw.get("data"), name, datatype, dtype)
    return InputTensor(name, datatype, tuple(shape), values), offset


def _json_values(data: Any, name: str, datatype: str, dtype: np.dtype[Any]) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidArgument(f"{brief(name)}.data: must be a list of numbers")
    try:
        values = np.asarray(data).reshape(-1)
    except ValueError:  # ragged nesting
        raise InvalidArgument(f"{brief(name)}.data: nested lists must be of equal length") from None
    if values.size == 0:
        return values.astype(dtype)
    integers = values.dtype.kind in "iu"
    if values.dtype.kind not in "iuf" or (datatype != "FP32" and not integers):
        kind = "integers" if datatype != "FP32" else "numbers"
        raise InvalidArgument(f"{brief(name)}.data: {datatype} values must be {kind}")
    info = np.iinfo(dtype) if datatype != "FP32" else None
    if info is not None and (values.min() < info.min or values.max() > info.max):
        raise InvalidArgument(f"{brief(name)}.data: a value does not fit {datatype}")
    return values.astype(dtype)


def _output(raw: Any, index: int) -> RequestedOutput:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidArgument(f"outputs[{index}]: must be an object with a name")
    name = raw["name"]
    return RequestedOutput(name, _parameters(raw.get("parameters"), f"outputs[{brief(name)}]"))


def _timeout(value: ParameterValue | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgument(f"parameters.{TIMEOUT}: {brief(value)} must be microseconds > 0")
    return value / 1e6


def json_body(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
