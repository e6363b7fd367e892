"""The Generator gRPC servicer: decode (codec), generate (data plane), encode. Nothing else.

Errors are mapped to status codes in one place, `_Call`: a call its client ended is
DEADLINE_EXCEEDED or CANCELLED (never an error of the server); a ServiceError becomes its own
code with its message; anything unexpected becomes INTERNAL and is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from cvae.v1 import generator_pb2 as pb
from service import codec
from service.catalog import ModelCatalog
from service.errors import (
    STREAM_MEMORY,
    WRITE_STALLED,
    CallEnded,
    DeadlineExpired,
    InvalidArgument,
    Overloaded,
    ServiceError,
)
from service.generator import GeneratedImages, GenerationJob, ImageGenerator, PixelFormat
from service.guard import LEND_AFTER_S, retrieve_error
from service.metrics import ServiceMetrics

_LOGGER = logging.getLogger(__name__)
# Responses with more pixels than this are encoded off the event loop (numpy releases the GIL).
_OFF_LOOP_PIXELS = 64 * 28 * 28
PROTOCOL = "cvae.v1"  # the `protocol` label of this servicer's calls in the metrics
_DEADLINE_SLACK_S = 1.0  # see _ended_code
METHODS = ("Generate", "GenerateStream", "GetModelInfo")
# Every code a call of this servicer can be counted as (each starts at 0 in /metrics).
CODES = (
    "OK", "CANCELLED", "DEADLINE_EXCEEDED", "INVALID_ARGUMENT", "NOT_FOUND",
    "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL",
)  # fmt: skip


class InFlight:
    """Counts Generator calls in progress, so shutdown can wait for exactly those.

    (Health Watch and reflection streams never end by themselves; they must not hold the
    shutdown for the whole grace period.)
    """

    def __init__(self) -> None:
        self.count = 0
        # Calls entered plus calls left: service.memory gives memory back after a pause in it.
        self.changes = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self.changes += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        self.changes += 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass(frozen=True)
class RequestLimits:
    """Per-request limits announced in ModelInfo and enforced by the codec."""

    max_images_per_request: int
    max_images_per_stream: int
    stream_chunk_size: int
    stream_memory_bytes: int  # what all open GenerateStream calls together may hold
    max_message_bytes: int  # gRPC's send limit: a larger response never reaches the client
    stream_write_timeout_s: float  # a stream message its client does not take in this long


class StreamMemory:
    """The bytes open GenerateStream calls and answers not yet taken by their clients hold,
    within a budget (like the queue's images)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0

    def reserve(self, size: int) -> None:
        """Count `size` bytes, or Overloaded when they would not fit the budget."""
        if self.held + size > self.budget:
            raise Overloaded(
                f"open streams and unread answers hold {self.held >> 20} MiB of the "
                f"{self.budget >> 20} MiB budget (--stream-memory-mib) and this call needs "
                f"{max(1, size >> 20)} MiB; retry later or ask fewer images",
                STREAM_MEMORY,
            )
        self.held += size

    def release(self, size: int) -> None:
        self.held -= size

    def hold_until(self, write: asyncio.Future[None], size: int) -> None:
        """Count `size` bytes until `write` ends: a stream that ended on a stalled write leaves
        its message in gRPC's buffers until the client reads it or its connection closes."""
        self.held += size
        write.add_done_callback(lambda _: self.release(size))


_RESPONSE_OVERHEAD = 256  # model name and version, offset, seed, tensor headers


def response_bytes(images: int, pixel_format: PixelFormat, omit_latents: bool, spec: Any) -> int:
    """Bytes of a response of `images` uint8 or float32 images (PNG: unknown, 0), a bound."""
    if pixel_format is PixelFormat.PNG:
        return 0
    pixels = spec.image_shape[0] * spec.image_shape[1]
    per_image = pixels * (4 if pixel_format is PixelFormat.FLOAT32 else 1) + 6  # + its label
    if not omit_latents:
        per_image += spec.latent_dim * 4
    return images * per_image + _RESPONSE_OVERHEAD


def _fits(size: int, limit: int, what: str) -> None:
    """InvalidArgument, before any work where it can be known, for a response gRPC would
    refuse to send (the client would see RESOURCE_EXHAUSTED, the server would count OK)."""
    if size > limit:
        raise InvalidArgument(
            f"{what}: the response would be {size:,} bytes, over the server's "
            f"--max-message-bytes ({limit:,}); ask fewer images per call (GenerateStream: a "
            "smaller chunk_size), UINT8 or PNG, or omit_latents"
        )


def stream_bytes(job: GenerationJob, pixels: int, latent_dim: int) -> int:
    """What a stream of `job` holds at most: labels, given latents, and two chunks (decoded
    float32 images, their encoding, latents drawn and sent)."""
    per_image = pixels * 8 + latent_dim * 8
    given = job.latents.nbytes if job.latents is not None else 0
    return job.labels.nbytes + given + 2 * job.chunk_size * per_image


class GeneratorServicer:
    """cvae.v1.Generator on the data plane.

    Requests arrive as raw bytes and are parsed here (codec.parse), so that a malformed message
    is the caller's INVALID_ARGUMENT rather than gRPC's UNKNOWN.
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        generator: ImageGenerator,
        metrics: ServiceMetrics,
        limits: RequestLimits,
        wait_write: WaitWrite,
    ) -> None:
        self._catalog = catalog
        self._generator = generator
        self._metrics = metrics
        self._limits = limits
        self._wait_write = wait_write
        self.in_flight = InFlight()
        self.streams = StreamMemory(limits.stream_memory_bytes)
        metrics.initialise_requests(PROTOCOL, METHODS, CODES)

    async def Generate(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse | None:
        async with _Call(self._metrics, self.in_flight, "Generate", context):
            deadline = _deadline_of(context)
            request, packed = codec.parse_generate(data)
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            limit = self._limits.max_images_per_request
            job = codec.decode_generate(request, runtime.spec, limit, packed)
            room = self._limits.max_message_bytes
            bound = response_bytes(
                len(job.labels), job.pixel_format, job.omit_latents, runtime.spec
            )
            _fits(bound, room, "labels")
            # Counted from now: once answered, until its client takes it (CallGuard).
            self.streams.reserve(bound)
            try:
                result = await self._generator.generate(runtime, job, deadline)
                response = await _encode(result, job)
            finally:
                self.streams.release(bound)
            _fits(response.ByteSize(), room, "labels")  # PNGs: known only now
            self._metrics.count_images(len(job.labels))
            return response
        return None  # _Call has set the error status; gRPC sends no message with it

    async def GenerateStream(self, data: bytes, context: grpc.aio.ServicerContext) -> None:
        async with _Call(self._metrics, self.in_flight, "GenerateStream", context):
            deadline = _deadline_of(context)
            request, packed = codec.parse_generate(data)
            del data  # a stream lives long: keep only the job (compact labels), not the request
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            limits = self._limits
            job = codec.decode_stream(
                request,
                runtime.spec,
                limits.max_images_per_stream,
                limits.stream_chunk_size,
                limits.max_images_per_request,
                packed,
            )
            del request, packed
            spec, room = runtime.spec, limits.max_message_bytes
            chunk = min(job.chunk_size, len(job.labels))
            _fits(
                response_bytes(chunk, job.pixel_format, job.omit_latents, spec), room, "chunk_size"
            )
            size = stream_bytes(job, spec.image_shape[0] * spec.image_shape[1], spec.latent_dim)
            self.streams.reserve(size)
            try:
                # Headers first, alone: a status after a stalled write can then follow it (a
                # batch of headers and message blocks any later batch with headers).
                await context.send_initial_metadata(())
                chunks = self._generator.stream(runtime, job, deadline)
                async with contextlib.aclosing(chunks):
                    async for images in chunks:
                        response = await _encode(images, job)
                        _fits(response.ByteSize(), room, "chunk_size")
                        await self._send(context, response)
                        self._metrics.count_images(len(images.labels))
            finally:
                self.streams.release(size)

    async def GetModelInfo(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo | None:
        async with _Call(self._metrics, self.in_flight, "GetModelInfo", context):
            request = codec.parse(pb.GetModelInfoRequest, data)
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            info = codec.encode_model_info(
                runtime.spec,
                self._catalog.registry(request.model_name).versions,
                self._limits.max_images_per_request,
                self._limits.max_images_per_stream,
            )
            info.has_encoder = runtime.encoder is not None
            info.available_models.extend(self._catalog.names)
            info.default_model = self._catalog.default
            return info
        return None  # _Call has set the error status; gRPC sends no message with it

    async def _send(self, context: grpc.aio.ServicerContext, message: pb.GenerateResponse) -> None:
        """context.write, where a failed write means the caller ended the call, and one its
        client does not take (HTTP/2 flow control) ends the stream: see WaitWrite.

        A client that cancels (or whose deadline passes) while the server waits on HTTP/2 flow
        control makes the write fail before gRPC has marked the call cancelled: grpc-js's small
        window makes that the common case, not a rare race.
        """
        # Not cancelled when it stalls: gRPC core keeps the message until the client reads or
        # goes, and a cancelled write would leave gRPC's batch behind the call's status.
        write = asyncio.ensure_future(context.write(message))
        write.add_done_callback(retrieve_error)
        timeout = self._limits.stream_write_timeout_s
        try:
            written = await self._wait_write(write, timeout)
        except asyncio.CancelledError:
            raise
        if not written:
            self.streams.hold_until(write, message.ByteSize())
            raise Overloaded(
                f"the client has not read this stream's messages for {timeout:g} s "
                "(--stream-write-timeout-s), or for "
                f"{min(timeout, LEND_AFTER_S):g} s while the server had no free call slot; "
                "resume from the last offset received",
                WRITE_STALLED,
            )
        error = write.exception()
        if error is not None:
            code = _ended_code(context.time_remaining())
            raise CallEnded(f"write failed: {error!r}", code) from None


def add_to_server(
    servicer: GeneratorServicer,
    server: grpc.aio.Server,
    more: Mapping[str, grpc.RpcMethodHandler] | None = None,
) -> None:
    """Register cvae.v1.Generator with raw-bytes request deserializers; `more` adds the
    methods other modules serve (service/encoding_servicer.py)."""
    handlers = {
        "Generate": grpc.unary_unary_rpc_method_handler(
            servicer.Generate, response_serializer=pb.GenerateResponse.SerializeToString
        ),
        "GenerateStream": grpc.unary_stream_rpc_method_handler(
            servicer.GenerateStream, response_serializer=pb.GenerateResponse.SerializeToString
        ),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo, response_serializer=pb.ModelInfo.SerializeToString
        ),
    }
    handlers.update(more or {})
    service_name = pb.DESCRIPTOR.services_by_name["Generator"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))


class _Call:
    """Times one RPC, counts it by status code, and turns exceptions into gRPC statuses.

    The rule for the code a call is counted as (and answered with, where anyone is left to
    answer), decided when the server is done with the call:
    1. its deadline has passed: DEADLINE_EXCEEDED, whatever the server was doing (gRPC has told
       the client so already; an answer the server finished too late is not delivered);
    2. else the client cancelled or went away (gRPC cancelled the handler, or a stream write
       failed): CANCELLED, or DEADLINE_EXCEEDED when that happened within 1 s of the
       deadline (the client's deadline timer, seen a little early: `_ended_code`);
    3. else the server's own outcome: OK, a ServiceError's code, or INTERNAL for anything
       unexpected, logged with its traceback.
    Calls in 1 and 2 are logged at DEBUG only: a client ending its own call is not a fault.
    """

    __slots__ = ("_context", "_in_flight", "_method", "_metrics", "_protocol", "_started")

    def __init__(
        self,
        metrics: ServiceMetrics,
        in_flight: InFlight,
        method: str,
        context: grpc.aio.ServicerContext,
        protocol: str = PROTOCOL,
    ) -> None:
        self._metrics = metrics
        self._in_flight = in_flight
        self._protocol = protocol
        self._method = method
        self._context = context
        self._started = time.perf_counter()

    async def __aenter__(self) -> _Call:
        self._in_flight.enter()
        self._metrics.call_started()
        return self

    async def __aexit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        code = "OK"
        try:
            ended = _ended_by_caller(self._context)
            if isinstance(error, CallEnded):
                ended = ended or error.code
            if ended is not None:
                code = ended
                if error is not None:
                    _LOGGER.debug(
                        "%s ended by the caller (%s, %s s before its deadline): %r",
                        self._method, code, self._context.time_remaining(), error,
                    )  # fmt: skip
                # Nothing to answer: the client has its status from gRPC already.
                raise asyncio.CancelledError from None
            if error is None:
                return False
            if isinstance(error, asyncio.CancelledError):  # the server is stopping
                code = "CANCELLED"
                return False
            if isinstance(error, ServiceError):
                code = error.code
                if isinstance(error, Overloaded):
                    self._metrics.count_refusal(error.reason)
                # Status without context.abort(): abort's AbortError would keep this call's
                # frames, and so the request, in a reference cycle with the call's state
                # until a full garbage collection (a 2M-label request leaked ~33 MB).
                self._context.set_code(grpc.StatusCode[error.code])
                self._context.set_details(str(error))
                return True
            code = "INTERNAL"
            _LOGGER.error("%s failed", self._method, exc_info=error)
            await self._context.abort(
                grpc.StatusCode.INTERNAL, "internal error; the server logged the details"
            )
            return False  # not reached: abort raises
        finally:
            self._in_flight.leave()
            self._metrics.call_finished()
            seconds = time.perf_counter() - self._started
            self._metrics.observe_request(self._protocol, self._method, code, seconds)


def _ended_by_caller(context: grpc.aio.ServicerContext) -> str | None:
    """DEADLINE_EXCEEDED once the call's deadline has passed, CANCELLED (or DEADLINE_EXCEEDED,
    see `_ended_code`) once the client cancelled it or went away, else None: the server still
    owes it an answer."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return "DEADLINE_EXCEEDED"
    if context.cancelled() or context.done():
        return _ended_code(remaining)
    return None


def _ended_code(remaining: float | None) -> str:
    """The code of a call the client reset with `remaining` s left of the server's deadline.

    The server's deadline is the client's timeout counted from when the headers arrived, so it
    falls a little after the client's own: a client whose deadline passes resets the stream
    while the server still sees some time left (over 0.25 s measured on a loaded 2-core
    machine). A reset within _DEADLINE_SLACK_S of the deadline is the client's deadline.
    """
    if remaining is not None and remaining <= _DEADLINE_SLACK_S:
        return "DEADLINE_EXCEEDED"
    return "CANCELLED"


# How a stream waits for one write: True once written, False when the stream must end because
# its client does not read (service/guard.py, CallGuard.write).
WaitWrite = Callable[[asyncio.Future[None], float], Awaitable[bool]]


def _deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline in loop time; a call that arrives already late does no work."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlineExpired("the deadline passed before the call was handled")
    return asyncio.get_running_loop().time() + remaining


async def _encode(result: GeneratedImages, job: GenerationJob) -> pb.GenerateResponse:
    if job.pixel_format is PixelFormat.PNG or result.images.size > _OFF_LOOP_PIXELS:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, codec.encode_generated, result, job)
    return codec.encode_generated(result, job)
