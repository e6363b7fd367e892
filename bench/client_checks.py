"""Real-client calls to the service: one Generate checked end to end, and the 100,000-image stream.

These use grpcio (the generated stubs), not h2load: the stream is one long call whose pace a
Python client keeps up with easily (a few hundred chunks per second), and the check reads the
decoded response, not just a status.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np

from bench.frames import generate_request
from bench.stats import percentile, rate
from cvae.v1 import generator_pb2, generator_pb2_grpc


class ClientCheckError(RuntimeError):
    """The service answered, but not with what the request asked for."""


def check_generate(
    port: int, images: int, encoding: str, image_shape: tuple[int, int]
) -> dict[str, Any]:
    """One Generate call: status OK and images of the asked number and shape."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        started = time.perf_counter()
        reply = stub.Generate(generate_request(images, encoding), timeout=30)
        seconds = time.perf_counter() - started
    if encoding == "PNG":
        if len(reply.png) != images or not all(png.startswith(b"\x89PNG") for png in reply.png):
            raise ClientCheckError(f"expected {images} PNGs, got {len(reply.png)}")
    else:
        expected = [images, *image_shape]
        if list(reply.images.shape) != expected or reply.images.dtype != "uint8":
            raise ClientCheckError(
                f"expected uint8 {expected}, got {reply.images.dtype} {list(reply.images.shape)}"
            )
        if len(reply.images.data) != images * image_shape[0] * image_shape[1]:
            raise ClientCheckError("image bytes do not match the shape")
    return {
        "encoding": encoding,
        "images": images,
        "seconds": seconds,
        "model_version": reply.model_version,
    }


def stream(
    port: int, images: int, image_shape: tuple[int, int], chunk_size: int = 0
) -> dict[str, Any]:
    """One GenerateStream of `images` UINT8 images, read to the end; rate and chunk gaps."""
    request = generate_request(images, "UINT8")
    request.chunk_size = chunk_size
    pixels = image_shape[0] * image_shape[1]
    received = 0
    arrivals = []
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        started = time.perf_counter()
        for reply in stub.GenerateStream(request, timeout=600):
            arrivals.append(time.perf_counter())
            if reply.offset != received:
                raise ClientCheckError(f"chunk at offset {reply.offset}, expected {received}")
            count = int(reply.images.shape[0])
            if len(reply.images.data) != count * pixels:
                raise ClientCheckError("chunk bytes do not match its shape")
            received += count
    seconds = arrivals[-1] - started if arrivals else 0.0
    if received != images:
        raise ClientCheckError(f"stream ended after {received} of {images} images")
    gaps_ms = np.diff(np.asarray([started, *arrivals])) * 1000
    return {
        "tool": "python grpcio client",
        "images": received,
        "chunks": len(arrivals),
        "seconds": seconds,
        "images_per_s": rate(received, seconds),
        "first_chunk_ms": float(gaps_ms[0]),
        "chunk_gap_p50_ms": percentile(gaps_ms, 50),
        "chunk_gap_p99_ms": percentile(gaps_ms, 99),
    }


def model_info(port: int) -> generator_pb2.ModelInfo:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return generator_pb2_grpc.GeneratorStub(channel).GetModelInfo(
            generator_pb2.GetModelInfoRequest(), timeout=10
        )
