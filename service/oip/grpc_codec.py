"""Open Inference Protocol protobuf <-> the signature's types (service.oip.signature).

With the OIP servicer, the only module that touches the generated `inference` stubs. Inputs may
come as typed `contents` or as `raw_input_contents` (little-endian, row-major); outputs always
leave as `raw_output_contents`, as Triton answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cvae.inference import grpc_service_pb2 as pb
from modelrepo import ModelSpec
from service.errors import InvalidArgument, brief
from service.generator import GeneratedImages
from service.oip import signature
from service.oip.signature import InputTensor, ParameterValue, RequestedOutput, TensorMetadata

# Which InferTensorContents field carries each datatype this service reads.
_INT64_LIMIT = 2**63
_CONTENTS_FIELD = {"INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents"}


def decode_call(
    request: pb.ModelInferRequest, spec: ModelSpec, max_images: int
) -> signature.InferCall:
    """A ModelInfer request checked against the model (see service.oip.signature)."""
    return signature.decode_call(
        _inputs(request),
        parameters_of(request.parameters, "parameters"),
        [
            RequestedOutput(output.name, parameters_of(output.parameters, output.name))
            for output in request.outputs
        ],
        spec,
        max_images,
    )


def encode_infer(
    result: GeneratedImages, call: signature.InferCall, request_id: str
) -> pb.ModelInferResponse:
    spec = result.runtime.spec
    image = signature.image_output(result.images, call.output_datatype)
    response = pb.ModelInferResponse(
        model_name=spec.name,
        model_version=spec.version,
        id=request_id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=signature.IMAGE, datatype=call.output_datatype, shape=list(image.shape)
            )
        ],
        raw_output_contents=[image.tobytes()],
    )
    if result.seed is not None:  # the seed the server drew (or was given): replayable
        seed = response.parameters[signature.SEED]
        if result.seed < _INT64_LIMIT:
            seed.int64_param = result.seed
        else:
            seed.uint64_param = result.seed
    return response


def encode_metadata(spec: ModelSpec, versions: Sequence[str]) -> pb.ModelMetadataResponse:
    response = pb.ModelMetadataResponse(
        name=spec.name,
        versions=list(versions),
        platform=signature.PLATFORM,
        inputs=[_tensor_metadata(tensor) for tensor in signature.inputs_of(spec)],
        outputs=[_tensor_metadata(tensor) for tensor in signature.outputs_of(spec)],
    )
    for name, value in sorted(spec.metrics.items()):
        response.parameters[name].double_param = value
    return response


def parameters_of(
    parameters: Mapping[str, pb.InferParameter], where: str
) -> dict[str, ParameterValue]:
    values: dict[str, ParameterValue] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidArgument(f"{where}.{brief(key)}: the parameter holds no value")
        values[key] = getattr(parameter, choice)
    return values


def _tensor_metadata(tensor: TensorMetadata) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape)
    )


def _inputs(request: pb.ModelInferRequest) -> list[InputTensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs "
            "(one per input, in the order of inputs)"
        )
    tensors = []
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        dtype = signature.NUMPY_DTYPES.get(tensor.datatype)
        if dtype is None or tensor.datatype not in _CONTENTS_FIELD:
            raise InvalidArgument(
                f"{brief(name)}.datatype: {brief(tensor.datatype)} is not one this model takes "
                f"({', '.join(_CONTENTS_FIELD)})"
            )
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(
                    f"{brief(name)}.contents: must be empty when raw_input_contents is used"
                )
            data = raw[index]
            if len(data) % dtype.itemsize:
                raise InvalidArgument(
                    f"{brief(name)}: {len(data)} raw bytes is not a whole number of "
                    f"{tensor.datatype} values ({dtype.itemsize} bytes each)"
                )
            values = np.frombuffer(data, dtype=dtype)
        else:
            field = getattr(tensor.contents, _CONTENTS_FIELD[tensor.datatype])
            values = np.asarray(field, dtype=dtype)
        tensors.append(InputTensor(name, tensor.datatype, tuple(tensor.shape), values))
    return tensors
