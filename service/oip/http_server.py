"""The Open Inference Protocol over HTTP/JSON (aiohttp, on the server's own event loop).

    GET  /v2/health/live                                   200 while the process answers
    GET  /v2/health/ready                                  200 ready, 400 not (yet, or stopping)
    GET  /v2                                               server metadata
    GET  /v2/models/{name}[/versions/{version}]            model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready      200 ready, 400 not
    POST /v2/models/{name}[/versions/{version}]/infer      inference (JSON or binary tensors)

Inference runs on the same data plane as gRPC (ImageGenerator, batcher, queue, limits). A
caller's deadline is Triton's request parameter `timeout` (microseconds). Errors answer
`{"error": message}` with the HTTP status of the error's gRPC code (INVALID_ARGUMENT 400,
NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, else 500).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.catalog import ModelCatalog
from service.errors import DeadlineExpired, ServiceError
from service.generator import ImageGenerator
from service.metrics import ServiceMetrics
from service.oip import http_codec
from service.oip.grpc_servicer import SERVER_NAME, server_version
from service.oip.models import resolve_model
from service.servicer import _OFF_LOOP_PIXELS, InFlight

_LOGGER = logging.getLogger(__name__)
PROTOCOL = "oip-http"
_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_Handler = Callable[[web.Request], Awaitable[web.Response]]


class InferenceHttpServer:
    """The /v2 endpoints on one port; `start` listens, `stop` refuses new calls and drains."""

    def __init__(
        self,
        catalog: ModelCatalog,
        generator: ImageGenerator,
        metrics: ServiceMetrics,
        in_flight: InFlight,
        max_images_per_request: int,
        max_body_bytes: int,
        grace_period_s: float,
        is_ready: Callable[[], bool],
    ) -> None:
        self._catalog = catalog
        self._generator = generator
        self._metrics = metrics
        self._in_flight = in_flight
        self._max_images = max_images_per_request
        self._is_ready = is_ready
        self._grace_period_s = grace_period_s
        self._app = web.Application(client_max_size=max_body_bytes)
        model = "/v2/models/{name}"
        versioned = model + "/versions/{version}"
        self._app.add_routes(
            [
                web.get("/v2/health/live", self._counted("ServerLive", self._live)),
                web.get("/v2/health/ready", self._counted("ServerReady", self._ready)),
                web.get("/v2", self._counted("ServerMetadata", self._server_metadata)),
                *(web.get(path, self._counted("ModelMetadata", self._model_metadata))
                  for path in (model, versioned)),
                *(web.get(path + "/ready", self._counted("ModelReady", self._model_ready))
                  for path in (model, versioned)),
                *(web.post(path + "/infer", self._counted("ModelInfer", self._infer))
                  for path in (model, versioned)),
            ]
        )  # fmt: skip
        self._runner: web.AppRunner | None = None
        self.bound_port = 0

    async def start(self, host: str, port: int, reuse_port: bool) -> None:
        """Listen; with `reuse_port` several processes (`--workers`) share the port."""
        runner = self._runner = web.AppRunner(
            self._app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self._grace_period_s,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
        await site.start()
        self.bound_port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the port; calls in progress get the grace period, then are cancelled."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _counted(self, method: str, handler: _Handler) -> _Handler:
        async def counted(request: web.Request) -> web.Response:
            started = time.perf_counter()
            code = "OK"
            self._in_flight.enter()
            self._metrics.call_started()
            try:
                return await handler(request)
            except ServiceError as error:
                code = error.code
                return web.json_response({"error": str(error)}, status=_STATUS.get(code, 500))
            except asyncio.CancelledError:  # the client closed the connection
                code = "CANCELLED"
                raise
            except web.HTTPRequestEntityTooLarge as error:  # beyond --max-message-bytes
                code = "RESOURCE_EXHAUSTED"
                return web.json_response({"error": f"request: {error.text}"}, status=413)
            except web.HTTPException:
                code = "INVALID_ARGUMENT"
                raise
            except Exception:
                code = "INTERNAL"
                _LOGGER.exception("%s failed", method)
                return web.json_response(
                    {"error": "internal error; the server logged the details"}, status=500
                )
            finally:
                self._in_flight.leave()
                self._metrics.call_finished()
                seconds = time.perf_counter() - started
                self._metrics.observe_request(PROTOCOL, method, code, seconds)

        return counted

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, request: web.Request) -> web.Response:
        ready = self._is_ready()
        return web.json_response({"ready": ready}, status=200 if ready else 400)

    async def _server_metadata(self, request: web.Request) -> web.Response:
        document = {"name": SERVER_NAME, "version": server_version(), "extensions": []}
        return web.json_response(document)

    async def _model_metadata(self, request: web.Request) -> web.Response:
        runtime = resolve_model(self._catalog, *_model_of(request))
        return web.json_response(
            http_codec.model_metadata(runtime.spec, self._catalog.registry(runtime.name).versions)
        )

    async def _model_ready(self, request: web.Request) -> web.Response:
        try:
            resolve_model(self._catalog, *_model_of(request))
        except ServiceError:
            return web.json_response({"ready": False}, status=400)
        return await self._ready(request)

    async def _infer(self, request: web.Request) -> web.Response:
        runtime = resolve_model(self._catalog, *_model_of(request))
        body = await request.read()
        infer = http_codec.decode_infer(
            body, request.headers.get(http_codec.HEADER_LENGTH), runtime.spec, self._max_images
        )
        loop = asyncio.get_running_loop()
        deadline = None if infer.timeout_s is None else loop.time() + infer.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                result = await self._generator.generate(runtime, infer.call.job, deadline)
        except TimeoutError:
            raise DeadlineExpired("the deadline (parameters.timeout) passed") from None
        if result.images.size > _OFF_LOOP_PIXELS:
            payload, header = await loop.run_in_executor(
                None, http_codec.encode_infer, result, infer
            )
        else:
            payload, header = http_codec.encode_infer(result, infer)
        self._metrics.count_images(len(infer.call.job.labels))
        if header is None:
            return web.Response(body=payload, content_type="application/json")
        response = web.Response(body=payload, content_type="application/octet-stream")
        response.headers[http_codec.HEADER_LENGTH] = str(header)
        return response


def _model_of(request: web.Request) -> tuple[str, str]:
    return request.match_info["name"], request.match_info.get("version", "")
