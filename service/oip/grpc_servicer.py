"""inference.GRPCInferenceService (the Open Inference Protocol over gRPC) on the data plane.

Thin, like the cvae.v1 servicer: parse, decode (grpc_codec), generate through the same
ImageGenerator, batcher, queue and deadlines, encode. Errors, timing and counting go through the
same `_Call` (metrics label protocol="oip-grpc"), and calls in flight are counted with cvae.v1's,
so a graceful stop waits for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import metadata
from typing import Any

import grpc

from cvae.inference import grpc_service_pb2 as pb
from service import codec
from service.catalog import ModelCatalog
from service.errors import ServiceError
from service.generator import ImageGenerator
from service.metrics import ServiceMetrics
from service.oip import grpc_codec
from service.oip.models import resolve_model
from service.runtime import ModelRuntime
from service.servicer import _OFF_LOOP_PIXELS, InFlight, _Call, _deadline_of

PROTOCOL = "oip-grpc"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "cvae-mnist-service"


class InferenceServicer:
    """The six Open Inference Protocol calls for the models this server holds.

    `is_ready` says whether the server takes inference calls (a model is warm and no stop was
    asked); liveness is this process answering at all.
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        generator: ImageGenerator,
        metrics: ServiceMetrics,
        in_flight: InFlight,
        max_images_per_request: int,
        is_ready: Callable[[], bool],
    ) -> None:
        self._catalog = catalog
        self._generator = generator
        self._metrics = metrics
        self._in_flight = in_flight
        self._max_images = max_images_per_request
        self._is_ready = is_ready

    async def ServerLive(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse | None:
        async with self._call("ServerLive", context):
            codec.parse(pb.ServerLiveRequest, data)
            return pb.ServerLiveResponse(live=True)
        return None  # _Call has set the error status

    async def ServerReady(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse | None:
        async with self._call("ServerReady", context):
            codec.parse(pb.ServerReadyRequest, data)
            return pb.ServerReadyResponse(ready=self._is_ready())
        return None

    async def ModelReady(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse | None:
        async with self._call("ModelReady", context):
            request = codec.parse(pb.ModelReadyRequest, data)
            try:
                self._resolve(request.name, request.version)
            except ServiceError:  # not loaded (yet), or not served here: not ready
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=self._is_ready())
        return None

    async def ServerMetadata(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse | None:
        async with self._call("ServerMetadata", context):
            codec.parse(pb.ServerMetadataRequest, data)
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=server_version())
        return None

    async def ModelMetadata(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse | None:
        async with self._call("ModelMetadata", context):
            request = codec.parse(pb.ModelMetadataRequest, data)
            runtime = self._resolve(request.name, request.version)
            return grpc_codec.encode_metadata(
                runtime.spec, self._catalog.registry(runtime.name).versions
            )
        return None

    async def ModelInfer(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse | None:
        async with self._call("ModelInfer", context):
            deadline = _deadline_of(context)
            request = codec.parse(pb.ModelInferRequest, data)
            runtime = self._resolve(request.model_name, request.model_version)
            call = grpc_codec.decode_call(request, runtime.spec, self._max_images)
            result = await self._generator.generate(runtime, call.job, deadline)
            if result.images.size > _OFF_LOOP_PIXELS:
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(
                    None, grpc_codec.encode_infer, result, call, request.id
                )
            else:
                response = grpc_codec.encode_infer(result, call, request.id)
            self._metrics.count_images(len(call.job.labels))
            return response
        return None

    def _call(self, method: str, context: grpc.aio.ServicerContext) -> _Call:
        return _Call(self._metrics, self._in_flight, method, context, PROTOCOL)

    def _resolve(self, name: str, version: str) -> ModelRuntime:
        return resolve_model(self._catalog, name, version)


def add_to_server(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Register inference.GRPCInferenceService with raw-bytes request deserializers."""
    methods: dict[str, Any] = {
        "ServerLive": pb.ServerLiveResponse,
        "ServerReady": pb.ServerReadyResponse,
        "ModelReady": pb.ModelReadyResponse,
        "ServerMetadata": pb.ServerMetadataResponse,
        "ModelMetadata": pb.ModelMetadataResponse,
        "ModelInfer": pb.ModelInferResponse,
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), response_serializer=response.SerializeToString
        )
        for name, response in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def server_version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"
