"""The gRPC floor: a grpc.aio server that answers Generate with a canned one-image response.

`python -m bench.echo_server --port P` does no decoding, no model and no encoding: what h2load
measures against it is the cost of grpc.aio itself on this machine, the ceiling for any Python
asyncio gRPC service here. Compare the service's single-image rows with it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from cvae.v1 import generator_pb2

_LOGGER = logging.getLogger(__name__)
SERVICE = "cvae.v1.Generator"


def _canned_response() -> bytes:
    """What the service sends for one UINT8 28x28 image with omit_latents (same size)."""
    return generator_pb2.GenerateResponse(
        images=generator_pb2.Tensor(shape=[1, 28, 28], dtype="uint8", data=bytes(28 * 28)),
        labels=[0],
        model_name="cvae-mnist",
        model_version="1",
        seed=1234,
    ).SerializeToString()


async def serve(port: int) -> None:
    response = _canned_response()

    async def generate(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return response

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Generate": grpc.unary_unary_rpc_method_handler(generate)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    checker = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _LOGGER.info("echo server on 127.0.0.1:%d", port)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
