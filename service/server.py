"""Build and run one server process: gRPC (Generator, health, reflection), metrics, reload, signals.

Lifecycle: health NOT_SERVING while the newest model version loads and warms up; SERVING after;
NOT_SERVING again the moment SIGTERM or SIGINT arrives, then new calls are refused, accepted
ones get `grace_period_s` seconds to finish, and `serve` returns 0. SIGHUP rescans the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cvae.v1 import generator_pb2 as pb
from service.batcher import DynamicBatcher
from service.catalog import ModelCatalog
from service.credentials import CredentialsError, server_credentials
from service.encoding import ImageEncoder
from service.encoding_servicer import EncodingServicer
from service.encoding_servicer import handlers as encoding_handlers
from service.errors import ModelLoadError
from service.fds import connection_cap
from service.generator import ImageGenerator, PixelFormat
from service.guard import CallGuard
from service.health import HealthServicer
from service.memory import trim_when_idle
from service.metrics import ServiceMetrics, build_metrics, serve_metrics
from service.oip.grpc_servicer import InferenceServicer
from service.oip.grpc_servicer import add_to_server as add_inference_to_server
from service.oip.http_server import InferenceHttpServer
from service.options import batching_policy, request_limits, runtime_options
from service.reflection import enable_reflection
from service.servicer import GeneratorServicer, add_to_server, response_bytes
from service.settings import ServiceSettings

_LOGGER = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Generator"].full_name  # "cvae.v1.Generator"
_HEALTH_NAMES = ("", SERVICE_NAME)
_INT32_MAX = 2**31 - 1  # gRPC's "infinite" for millisecond options
_SETTLE_S = 0.25  # on stop: accept this long after NOT_SERVING, and wait this long for no calls
# Keepalive policy (docs/generate.md, "Keepalive"); cvae.client's own pings respect it.
# Clients may ping as often as every KEEPALIVE_MIN_CLIENT_PING_S, with or without calls; a
# client that pings more often gets GOAWAY "too_many_pings" after _MAX_PING_STRIKES pings too
# soon. The server pings an idle connection every _KEEPALIVE_TIME_S and closes it when no
# answer comes within _KEEPALIVE_TIMEOUT_S (a peer that vanished without a FIN).
KEEPALIVE_MIN_CLIENT_PING_S = 5
_MAX_PING_STRIKES = 2
_KEEPALIVE_TIME_S = 60
_KEEPALIVE_TIMEOUT_S = 20
_HANDSHAKE_TIMEOUT_S = 10  # a connection that has not sent its HTTP/2 preface (and TLS) by then


class StartupError(Exception):
    """The server cannot start; the message says which file, port or setting and why."""


def grpc_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # One process owns the port: a second server on it fails instead of sharing silently.
        # Several workers (service/workers.py) share it: the kernel spreads connections.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MIN_CLIENT_PING_S * 1000),
        ("grpc.http2.max_ping_strikes", _MAX_PING_STRIKES),
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_S * 1000),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_S * 1000),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging an idle connection
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.max_allowed_incoming_connections", port_connections(settings)),
        ("grpc.server_handshake_timeout_ms", _HANDSHAKE_TIMEOUT_S * 1000),
    ]
    if settings.max_connection_idle_s > 0:
        options.append(("grpc.max_connection_idle_ms", _ms(settings.max_connection_idle_s)))
    if settings.max_pending_rpcs > 0:
        options += [
            ("grpc.server.max_pending_requests", settings.max_pending_rpcs),
            ("grpc.server.max_pending_requests_hard_limit", 2 * settings.max_pending_rpcs),
        ]
    if settings.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", _ms(settings.max_connection_age_s)),
            # An aged connection takes no new calls; those open on it get a bounded grace.
            ("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace_s)),
        ]
    return options


def port_connections(settings: ServiceSettings) -> int:
    """Connections each client port takes: --max-connections (or what the file limit leaves),
    shared by the gRPC and HTTP ports when both listen."""
    total = connection_cap(settings.max_connections)
    return max(1, total // 2) if settings.http_port else total


def _ms(seconds: float) -> int:
    return min(_INT32_MAX, max(1, round(seconds * 1000)))


class GenerationServer:
    """One process's server and everything it owns."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.metrics: ServiceMetrics = build_metrics(settings.max_batch)
        self.batcher = DynamicBatcher(batching_policy(settings), self.metrics)
        self.health = HealthServicer()
        self.catalog = ModelCatalog(
            settings.model_repository,
            settings.model_name,
            settings.keep_versions,
            runtime_options(settings),
            self.metrics,
            settings.model_load_timeout_s,
        )
        self.guard = CallGuard(
            settings.concurrent_rpcs_limit,
            settings.message_timeout_s,
            self.metrics,
            settings.max_health_watches,
            settings.stream_write_timeout_s,
            settings.max_reflection_streams,
        )
        self.server = grpc.aio.server(options=grpc_options(settings), interceptors=[self.guard])
        # Health only, plaintext, for kubelet probes of a TLS server (--health-port).
        self.health_server = (
            grpc.aio.server(
                options=[("grpc.so_reuseport", 1 if settings.workers > 1 else 0)],
                interceptors=[
                    CallGuard(
                        None,
                        settings.message_timeout_s,
                        self.metrics,
                        settings.max_health_watches,
                        settings.stream_write_timeout_s,
                        settings.max_reflection_streams,
                    )
                ],
            )
            if settings.health_port
            else None
        )
        self._stopping = asyncio.Event()
        self._metrics_http: Any = None
        self._inference_http: InferenceHttpServer | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._servicer: GeneratorServicer | None = None
        self.ready = False  # a model is warm and no stop was asked (OIP ServerReady, ModelReady)
        self.bound_port = 0

    async def start(self) -> None:
        """Open the ports and load the model; health turns SERVING when it is warm."""
        await self.open()
        await self.load()

    async def open(self) -> None:
        """Check the repository exists, then listen: health says NOT_SERVING until `load`."""
        settings = self.settings
        self.catalog.check()  # a missing or empty repository fails before any port opens
        try:
            credentials = server_credentials(settings)
        except CredentialsError as error:
            raise StartupError(str(error)) from None
        for name in _HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        generator = ImageGenerator(self.batcher)
        servicer = self._servicer = GeneratorServicer(
            self.catalog,
            generator,
            self.metrics,
            request_limits(settings),
            self.guard.write,
        )
        self.guard.hold_answer = servicer.streams.hold_until
        encoding = EncodingServicer(
            self.catalog,
            ImageEncoder(self.batcher),
            self.metrics,
            settings.max_images_per_request,
            servicer.in_flight,
        )
        add_to_server(servicer, self.server, encoding_handlers(encoding))
        # The Open Inference Protocol on the same port and data plane (its stubs live in a
        # descriptor pool of their own, so reflection does not list it).
        inference = InferenceServicer(
            self.catalog,
            generator,
            self.metrics,
            servicer.in_flight,
            settings.max_images_per_request,
            lambda: self.ready,
        )
        add_inference_to_server(inference, self.server)
        if settings.http_port:
            self._inference_http = InferenceHttpServer(
                self.catalog,
                generator,
                self.metrics,
                servicer.in_flight,
                settings.max_images_per_request,
                settings.max_message_bytes,
                settings.grace_period_s,
                lambda: self.ready,
                self.guard,
                settings.message_timeout_s,
                port_connections(settings),
                servicer.streams,
                settings.stream_write_timeout_s,
            )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name),
            self.server,
        )
        self.bound_port = self._bind(credentials)
        if self.health_server is not None:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            address = f"{settings.host}:{settings.health_port}"
            try:
                bound = self.health_server.add_insecure_port(address)
            except RuntimeError as error:
                bound = 0
                _LOGGER.debug("health port: %s", error)
            if bound == 0:
                raise StartupError(
                    f"--health-port {settings.health_port}: cannot listen on {address}"
                )
        if settings.metrics_port:
            try:
                self._metrics_http = serve_metrics(
                    self.metrics, settings.host.strip("[]"), settings.metrics_port
                )
            except OSError as error:
                raise StartupError(
                    f"--metrics-port {settings.metrics_port}: cannot listen ({error})"
                ) from None
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        if self._inference_http is not None:
            try:
                await self._inference_http.start(
                    settings.host.strip("[]"), settings.http_port, reuse_port=settings.workers > 1
                )
            except OSError as error:
                raise StartupError(
                    f"--http-port {settings.http_port}: cannot listen ({error})"
                ) from None

    async def load(self) -> None:
        """Load and warm up the newest version, then turn health SERVING."""
        settings = self.settings
        # A stop signal ends start-up whatever the load is doing (it is abandoned in its thread).
        loading = asyncio.ensure_future(self.catalog.load())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait((loading, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not loading.done():
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            _LOGGER.info("stop signal during start-up: the model load is abandoned")
            return
        runtime = loading.result()
        _warn_if_responses_cannot_fit(settings, runtime.spec)
        gc.collect()
        gc.freeze()  # what start-up built lives forever: keep it out of every later collection
        # The server's names, and each model's name for the models with a version loaded.
        for name in (*_HEALTH_NAMES, *self.catalog.loaded_names()):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.ready = True
        _LOGGER.info(
            "SERVING %s version %s on %s:%d (%s, pid %d)",
            runtime.name,
            runtime.version,
            settings.host,
            self.bound_port,
            "TLS" if settings.tls else "plaintext",
            os.getpid(),
        )

    def request_stop(self) -> None:
        if self._stopping.is_set():
            _LOGGER.warning("second stop signal: cancelling what is still running")
            self._tasks.add(asyncio.ensure_future(self.server.stop(0)))
            return
        _LOGGER.info("stop signal: NOT_SERVING, finishing accepted work")
        self._stopping.set()
        self.ready = False
        # Health flips before anything else happens to the server.
        self._tasks.add(asyncio.ensure_future(self.health.enter_graceful_shutdown()))

    async def run_until_stopped(self) -> None:
        background = [asyncio.ensure_future(self.catalog.watch(self.settings.reload_interval_s))]
        in_flight = self._servicer.in_flight if self._servicer is not None else None
        if in_flight is not None:
            trimmer = trim_when_idle(lambda: in_flight.changes)
            background.append(asyncio.ensure_future(trimmer))
        try:
            await self._stopping.wait()
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.health.enter_graceful_shutdown()
        # Calls that reached the socket before the signal may still wait for this event loop to
        # hand them to a handler, and grpc.aio cancels such calls when it stops accepting: so
        # keep accepting a moment longer (clients watching health have gone by then).
        await asyncio.sleep(min(_SETTLE_S, self.settings.grace_period_s))
        await self._drain(self.settings.grace_period_s)
        _LOGGER.info("stopped")

    async def _drain(self, grace: float) -> None:
        """Refuse new calls; give Generator calls in flight `grace` s; then cancel the rest.

        Calls gRPC accepted before the stop reach their handlers some loop turns later (much
        later on a busy machine), so no call may be in flight for `_SETTLE_S` before the rest
        is cancelled.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        stopping = asyncio.ensure_future(self.server.stop(grace))
        http_stopping = None
        if self._inference_http is not None:  # closes its port; its calls are in `in_flight`
            http_stopping = asyncio.ensure_future(self._inference_http.stop())
        in_flight = self._servicer.in_flight if self._servicer is not None else None
        while in_flight is not None and loop.time() < deadline:
            await asyncio.sleep(min(_SETTLE_S, deadline - loop.time()))
            if not in_flight.count:
                break
            _LOGGER.info("finishing %d calls in flight", in_flight.count)
            try:
                await asyncio.wait_for(in_flight.wait_idle(), timeout=deadline - loop.time())
            except TimeoutError:
                _LOGGER.warning("grace period over: cancelling %d calls", in_flight.count)
                break
        await self.server.stop(0)  # health watchers and reflection streams end here
        await stopping
        if self.health_server is not None:  # answered NOT_SERVING all through the drain
            await self.health_server.stop(0)
        if http_stopping is not None:
            await http_stopping

    def close(self) -> None:
        self.batcher.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()

    def _bind(self, credentials: grpc.ServerCredentials | None) -> int:
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            if credentials is None:
                port = self.server.add_insecure_port(address)
            else:
                port = self.server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise StartupError(
                f"--port {self.settings.port}: cannot listen on {address} ({error})"
            ) from None
        if port == 0:
            raise StartupError(f"--port {self.settings.port}: cannot listen on {address}")
        return port


def _warn_if_responses_cannot_fit(settings: ServiceSettings, spec: Any) -> None:
    """--max-images-per-request float32 images with latents must fit --max-message-bytes, or
    such requests are refused (INVALID_ARGUMENT, before any work): say so at start."""
    largest = response_bytes(settings.max_images_per_request, PixelFormat.FLOAT32, False, spec)
    if largest > settings.max_message_bytes:
        _LOGGER.warning(
            "--max-images-per-request %d float32 images with latents make a %d-byte response, "
            "over --max-message-bytes %d: such calls are refused with INVALID_ARGUMENT (UINT8, "
            "PNG or omit_latents fit more)",
            settings.max_images_per_request, largest, settings.max_message_bytes,
        )  # fmt: skip


async def serve(settings: ServiceSettings) -> int:
    """Run one server process until SIGTERM/SIGINT; 0 after a graceful stop."""
    loop = asyncio.get_running_loop()
    server = GenerationServer(settings)
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, server.request_stop)
    loop.add_signal_handler(signal.SIGHUP, server.catalog.trigger)
    try:
        await server.start()
        await server.run_until_stopped()
    except (ModelLoadError, StartupError):
        await server.server.stop(0)
        if server.health_server is not None:
            await server.health_server.stop(0)
        raise
    finally:
        server.close()
    return 0
