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

The gRPC port's limits hold here too, with the same settings:
- an infer call takes a slot of --max-concurrent-rpcs (the gRPC port's CallGuard: one count for
  both ports) and is refused with 429 beyond it; health and metadata take none;
- a connection must send its next request's headers within --message-timeout-s of connecting
  or of its previous answer (slow-loris headers, idle keep-alive), and a request its whole body
  within --message-timeout-s of its headers (408); either is counted as message_timeout;
- a body over --max-message-bytes is refused with 413 (compressed bodies: their decoded size);
- an answer counts in --stream-memory-mib until its client has taken it, and one not taken
  within --stream-write-timeout-s closes its connection (write_stalled);
- at most --max-connections connections: one beyond is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.catalog import ModelCatalog
from service.errors import (
    CONCURRENCY_LIMIT,
    MESSAGE_TIMEOUT,
    WRITE_STALLED,
    DeadlineExpired,
    Overloaded,
    ServiceError,
)
from service.generator import ImageGenerator
from service.guard import CallGuard
from service.metrics import ServiceMetrics
from service.oip import http_codec
from service.oip.grpc_servicer import SERVER_NAME, server_version
from service.oip.models import resolve_model
from service.servicer import _OFF_LOOP_PIXELS, InFlight, StreamMemory

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
        guard: CallGuard,
        request_timeout_s: float,
        max_connections: int,
        answers: StreamMemory,
        write_timeout_s: float,
    ) -> None:
        self._answers = answers
        self._write_timeout_s = write_timeout_s
        self._guard = guard
        self._request_timeout_s = request_timeout_s
        self._max_connections = max_connections
        self._busy: set[asyncio.BaseProtocol] = set()  # connections with a request in progress
        self._served: dict[asyncio.BaseProtocol, int] = {}  # requests answered, per connection
        self._timed_out: set[asyncio.BaseProtocol] = set()  # answered 408, closing
        self._listener: asyncio.Server | None = None
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
                *(web.post(path + "/infer", self._counted("ModelInfer", self._infer, True))
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
            keepalive_timeout=2 * self._request_timeout_s + 1,  # `_expect_request` closes first
        )
        await runner.setup()
        # Our own listener (not a TCPSite) so that each connection is capped and timed.
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._accept, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        self.bound_port = int(self._listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the port; calls in progress get the grace period, then are cancelled."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _accept(self) -> asyncio.BaseProtocol:
        """A connection's protocol: aiohttp's, timed (`_expect_request`), or, beyond
        --max-connections, one that closes the connection at once."""
        assert self._runner is not None and self._runner.server is not None
        server = self._runner.server
        if len(server.connections) >= self._max_connections:
            return _Refuse()
        protocol = server()
        self._expect_request(protocol)
        return protocol

    def _expect_request(self, protocol: asyncio.BaseProtocol) -> None:
        """Close `protocol`'s connection unless a request of it reaches a handler within
        --message-timeout-s (aiohttp itself waits 3,630 s for headers that trickle in)."""

        def expire() -> None:
            transport = getattr(protocol, "transport", None)
            if protocol in self._busy or self._served.get(protocol) != served:
                return  # a request came: a later timer watches this connection
            if transport is not None and not transport.is_closing():
                if protocol not in self._timed_out:  # (a 408 was counted already)
                    self._metrics.count_refusal(MESSAGE_TIMEOUT)
                _LOGGER.debug("http: no request within %g s: closing", self._request_timeout_s)
                transport.close()
            self._served.pop(protocol, None)
            self._timed_out.discard(protocol)

        served = self._served.setdefault(protocol, 0)
        asyncio.get_running_loop().call_later(self._request_timeout_s, expire)

    def _counted(self, method: str, handler: _Handler, limited: bool = False) -> _Handler:
        async def counted(request: web.Request) -> web.Response:
            started = time.perf_counter()
            code = "OK"
            protocol = request.protocol
            self._busy.add(protocol)
            self._in_flight.enter()
            self._metrics.call_started()
            slot = None
            try:
                if limited:
                    slot = self._guard.take()
                    if slot is None:
                        raise Overloaded(self._guard.refusal, CONCURRENCY_LIMIT)
                return await handler(request)
            except ServiceError as error:
                code = error.code
                if isinstance(error, Overloaded) and error.reason != CONCURRENCY_LIMIT:
                    self._metrics.count_refusal(error.reason)  # (take() counted that one)
                return web.json_response({"error": str(error)}, status=_STATUS.get(code, 500))
            except _WriteStalled:
                code = "RESOURCE_EXHAUSTED"
                raise asyncio.CancelledError from None  # the connection is closed: no answer
            except TimeoutError:  # the body did not arrive in time
                code = "RESOURCE_EXHAUSTED"
                self._metrics.count_refusal(MESSAGE_TIMEOUT)
                self._timed_out.add(protocol)
                message = (
                    f"request: the body did not arrive within {self._request_timeout_s:g} s of "
                    "the headers (--message-timeout-s)"
                )
                response = web.json_response({"error": message}, status=408)
                response.force_close()
                return response
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
                if slot is not None:
                    self._guard.leave(slot)
                self._busy.discard(protocol)
                self._served[protocol] = self._served.get(protocol, 0) + 1
                self._expect_request(protocol)  # the next request on this connection
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
        async with asyncio.timeout(self._request_timeout_s):
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
            response = web.Response(body=payload, content_type="application/json")
        else:
            response = web.Response(body=payload, content_type="application/octet-stream")
            response.headers[http_codec.HEADER_LENGTH] = str(header)
        return await self._send(request, response, len(payload))

    async def _send(self, request: web.Request, response: web.Response, size: int) -> web.Response:
        """Write the answer here, its bytes counted in --stream-memory-mib until the client has
        taken them; one it does not take within --stream-write-timeout-s closes the connection
        (60 unread 1,024-image answers held 122 MiB, for as long as their clients stayed)."""
        self._answers.reserve(size)
        try:
            async with asyncio.timeout(self._write_timeout_s):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            self._metrics.count_refusal(WRITE_STALLED)
            if request.transport is not None:
                request.transport.close()
            raise _WriteStalled from None
        finally:
            self._answers.release(size)
        return response


class _WriteStalled(Exception):
    """The client did not take its answer within --stream-write-timeout-s."""


class _Refuse(asyncio.Protocol):
    """A connection beyond --max-connections: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _model_of(request: web.Request) -> tuple[str, str]:
    return request.match_info["name"], request.match_info.get("version", "")
