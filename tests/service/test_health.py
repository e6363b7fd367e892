"""Health in a real server on a real port, step by step: NOT_SERVING while the model loads,
SERVING once it is warm, NOT_SERVING from the moment a stop is asked, then refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from service.server import GenerationServer
from service.settings import ServiceSettings
from tests.service.serverproc import free_port

pytestmark = pytest.mark.timeout(120)
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVING = health_pb2.HealthCheckResponse.SERVING


def test_health_follows_the_server_through_its_life(model_repo: Path) -> None:
    async def main() -> None:
        settings = ServiceSettings(
            model_repository=model_repo, host="127.0.0.1", port=free_port(), metrics_port=0
        )
        server = GenerationServer(settings)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            generator = pb_grpc.GeneratorStub(channel)

            async def status(service: str) -> int:
                request = health_pb2.HealthCheckRequest(service=service)
                return (await health.Check(request, timeout=10)).status

            await server.open()
            assert await status("") == _NOT_SERVING
            assert await status("cvae.v1.Generator") == _NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await generator.Generate(pb.GenerateRequest(labels=[1]), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "no model version is loaded yet" in (raised.value.details() or "")

            await server.load()
            assert await status("") == _SERVING
            assert await status("cvae.v1.Generator") == _SERVING
            response = await generator.Generate(pb.GenerateRequest(labels=[1]), timeout=10)
            assert response.model_version == "1"

            server.request_stop()
            await asyncio.sleep(0)  # the flip is the first thing the stop does
            assert await status("") == _NOT_SERVING
            assert await status("cvae.v1.Generator") == _NOT_SERVING
            await server.run_until_stopped()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await status("")
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        server.close()

    asyncio.run(main())
