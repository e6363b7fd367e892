"""gRPC wire frames and prebuilt request bodies, for load generators that speak raw HTTP/2.

A gRPC message on the wire is one frame: a compression flag byte (0), the message length as 4
big-endian bytes, then the serialized protobuf. h2load posts such a body with the headers
`content-type: application/grpc` and `te: trailers`.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from cvae.inference import grpc_service_pb2 as oip_pb2
from cvae.v1 import generator_pb2

GENERATE_PATH = "/cvae.v1.Generator/Generate"
KSERVE_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
_HEADER = struct.Struct(">BI")
ENCODINGS = {
    "UINT8": generator_pb2.UINT8,
    "PNG": generator_pb2.PNG,
    "FLOAT32": generator_pb2.FLOAT32,
}


class FrameError(ValueError):
    """Bytes that are not a sequence of whole, uncompressed gRPC frames."""


def encode_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    if len(message) >= 1 << 32:
        raise FrameError(f"a gRPC message holds at most 4 GiB, got {len(message)} bytes")
    return _HEADER.pack(0, len(message)) + message


def decode_frames(body: bytes) -> list[bytes]:
    """Split an HTTP/2 body into the gRPC messages it carries."""
    messages = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _HEADER.size:
            raise FrameError(f"truncated frame header at byte {offset}")
        compressed, length = _HEADER.unpack_from(body, offset)
        if compressed not in (0, 1):
            raise FrameError(f"bad compression flag {compressed} at byte {offset}")
        if compressed:
            raise FrameError("compressed gRPC messages are not supported here")
        start = offset + _HEADER.size
        if start + length > len(body):
            raise FrameError(f"frame at byte {offset} claims {length} bytes, body has fewer")
        messages.append(body[start : start + length])
        offset = start + length
    return messages


def generate_request(
    images: int, encoding: str, *, seed: int = 1234, num_classes: int = 10
) -> generator_pb2.GenerateRequest:
    """The service's request for `images` digits cycling through the labels, seeded."""
    if images < 1:
        raise ValueError("a request needs at least one image")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    return generator_pb2.GenerateRequest(
        labels=[index % num_classes for index in range(images)],
        seed=seed,
        encoding=ENCODINGS[encoding],
        omit_latents=True,
    )


def generate_frame(images: int, encoding: str, *, seed: int = 1234, num_classes: int = 10) -> bytes:
    return encode_frame(
        generate_request(images, encoding, seed=seed, num_classes=num_classes).SerializeToString()
    )


def infer_request(
    model_name: str, images: int, *, seed: int = 1234, num_classes: int = 10
) -> oip_pb2.ModelInferRequest:
    """The Open Inference Protocol's request for the same work as `generate_request` (labels
    cycling through the classes, seeded), asking for UINT8 images: the same bytes on the wire."""
    if images < 1:
        raise ValueError("a request needs at least one image")
    labels = np.arange(images, dtype="<i4") % num_classes
    request = oip_pb2.ModelInferRequest(
        model_name=model_name,
        inputs=[
            oip_pb2.ModelInferRequest.InferInputTensor(
                name="label", datatype="INT32", shape=[images]
            )
        ],
        outputs=[oip_pb2.ModelInferRequest.InferRequestedOutputTensor(name="image")],
        raw_input_contents=[labels.tobytes()],
    )
    request.parameters["seed"].int64_param = seed
    request.outputs[0].parameters["datatype"].string_param = "UINT8"
    return request


def infer_frame(model_name: str, images: int, *, seed: int = 1234, num_classes: int = 10) -> bytes:
    return encode_frame(
        infer_request(model_name, images, seed=seed, num_classes=num_classes).SerializeToString()
    )


def infer_json(model_name: str, images: int, *, seed: int = 1234, num_classes: int = 10) -> bytes:
    """The same request as JSON for the protocol's HTTP endpoint (/v2/models/NAME/infer)."""
    body = {
        "inputs": [
            {
                "name": "label",
                "datatype": "INT32",
                "shape": [images],
                "data": [index % num_classes for index in range(images)],
            }
        ],
        "parameters": {"seed": seed},
        "outputs": [{"name": "image", "parameters": {"datatype": "UINT8"}}],
    }
    return json.dumps(body).encode()
