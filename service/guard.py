"""What a call may hold before and while it runs: a bounded wait for its request message, and a
slot of the data plane's concurrency limit taken only once that message is there.

grpc.aio's own `maximum_concurrent_rpcs` counts a call from its HEADERS, and grpc.aio waits for
a unary call's request message without any bound: one connection sending HEADERS and no message
(or a length prefix promising more bytes than it sends) could hold every slot, health checks
included, for as long as it stayed connected. `CallGuard`, a server interceptor, instead:

- receives every unary request itself (it serves each method as request-streaming and reads the
  one message), waiting at most `message_timeout_s` from the call's start: a call whose message
  does not arrive in time is refused with RESOURCE_EXHAUSTED (`message_timeout`), one that ends
  its request without a message with INVALID_ARGUMENT, and either is finished at once, so that
  its HTTP/2 stream is free again;
- counts the data plane's calls (everything but health and reflection) from the moment their
  message has arrived until their handler returns, and refuses one beyond `limit` with
  RESOURCE_EXHAUSTED (`concurrency_limit`). Health checks never wait for or count against a
  slot: Kubernetes probes answer whatever Generate traffic does;
- lends the slot of a stream whose client does not read (`write`: a message that HTTP/2 flow
  control has held for `LEND_AFTER_S`): a call that finds the limit full takes a lent slot
  instead of being refused, and the stalled stream ends with RESOURCE_EXHAUSTED
  (`write_stalled`). So streams nobody reads (chunk_size 1 makes them cheap) cannot lock others
  out, however many connections carry them; a stream that is read keeps its slot;
- caps the health Watch streams open at once (`max_watches`, all connections together): each
  holds ~23 KiB and is written on every status change, and a Watch never ends by itself. One
  beyond the cap is refused with RESOURCE_EXHAUSTED (`watch_limit`); Check is never capped.
  Reflection streams, which never end by themselves either, have a cap of their own
  (`max_reflections`, `reflection_limit`).

The refusals are counted in cvae_refusals_total{reason}.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.errors import (
    CONCURRENCY_LIMIT,
    MESSAGE_TIMEOUT,
    REFLECTION_LIMIT,
    WATCH_LIMIT,
    WRITE_STALLED,
)
from service.metrics import ServiceMetrics

_LOGGER = logging.getLogger(__name__)
# Services whose calls take no slot of the limit: probes and tooling must always get through.
_REFLECTION = "/grpc.reflection."
_UNLIMITED_PREFIXES = ("/grpc.health.", _REFLECTION)
WATCH = "/grpc.health.v1.Health/Watch"
_Refused = object()  # the call was refused before its handler ran
# A stream write flow control has held this long lends its call's slot (module doc). Short: a
# client that reads gives gRPC a window again within a round trip.
LEND_AFTER_S = 1.0
# What an unread answer holds, in copies of its message: the message, its serialized bytes and
# gRPC core's buffer (measured: 168 unread 874 KB answers grew the server by 427 MiB, 2.9x).
_ANSWER_COPIES = 3


class Slot:
    """One data-plane call's slot of the limit, while its handler runs."""

    __slots__ = ("taken",)

    def __init__(self) -> None:
        # Set once another call has taken this slot while it was lent: the call must end.
        self.taken: asyncio.Future[None] | None = None


_SLOT: contextvars.ContextVar[Slot | None] = contextvars.ContextVar("cvae_slot", default=None)


class _StreamCap:
    """Streams of one kind that never end by themselves (health Watch, reflection): how many are
    open, and a refusal at the cap, counted under `reason`."""

    def __init__(self, limit: int, reason: str, refusal: str) -> None:
        self.limit = limit
        self.open = 0
        self._reason = reason
        self._refusal = refusal

    def enter(self, context: grpc.aio.ServicerContext, metrics: ServiceMetrics) -> bool:
        """Count one more, or refuse it (its status set) at the cap."""
        if self.open >= self.limit:
            metrics.count_refusal(self._reason)
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(f"{self.limit} {self._refusal}")
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


class CallGuard(grpc.aio.ServerInterceptor):
    """Bounded request-message wait and a concurrency limit on the data plane (module doc)."""

    def __init__(
        self,
        limit: int | None,
        message_timeout_s: float,
        metrics: ServiceMetrics,
        max_watches: int,
        write_timeout_s: float,
        max_reflections: int,
    ) -> None:
        self._reflections = _StreamCap(
            max_reflections,
            REFLECTION_LIMIT,
            "reflection streams are open, the server's limit (--max-reflection-streams); "
            "retry with backoff",
        )
        self._write_timeout_s = write_timeout_s
        # Counts an answer's bytes until its write is done (the servicer's StreamMemory): an
        # answer its client does not read stays in gRPC's buffers until the client reads or goes.
        self.hold_answer: Callable[[asyncio.Future[None], int], None] | None = None
        self._limit = limit
        self._watches = _StreamCap(
            max_watches,
            WATCH_LIMIT,
            "health Watch streams are open, the server's limit (--max-health-watches); use "
            "Check, or retry with backoff",
        )
        self._message_timeout_s = message_timeout_s
        self._metrics = metrics
        self.active = 0  # data-plane calls between their message and their handler's end
        self._lent: dict[Slot, None] = {}  # slots of stalled streams, oldest first
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if handler.request_streaming and not method.startswith(_REFLECTION):
            return handler
        known = self._guarded.get(method)
        if known is None or known[0] is not handler:
            guarded = (
                self._reflection(handler)
                if handler.request_streaming
                else self._guard(method, handler)
            )
            known = self._guarded[method] = (handler, guarded)
        return known[1]

    def _reflection(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """Reflection streams, capped like Watch: they never end by themselves either."""
        streaming: Any = handler.stream_stream

        async def reflect(requests: Any, context: grpc.aio.ServicerContext) -> None:
            if not self._reflections.enter(context, self._metrics):
                return
            try:
                result = streaming(requests, context)
                if inspect.isasyncgen(result):
                    async for message in result:
                        await context.write(message)
                else:
                    await result
            finally:
                self._reflections.leave()

        return grpc.stream_stream_rpc_method_handler(
            reflect,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guard(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        limited = self._limit is not None and not method.startswith(_UNLIMITED_PREFIXES)
        watch = method == WATCH
        receive, admit = self._receive, self._admit
        if handler.response_streaming:
            streaming: Any = handler.unary_stream  # grpc-stubs types it for the sync server

            async def unary_stream(_requests: Any, context: grpc.aio.ServicerContext) -> None:
                request = await receive(context)
                if request is _Refused:
                    return
                slot = admit(context) if limited else None
                if limited and slot is None:
                    return
                if watch and not self._watches.enter(context, self._metrics):
                    return
                _SLOT.set(slot)
                try:
                    result = streaming(request, context)
                    del request  # the handler may drop it (a stream's request can be big)
                    if inspect.isasyncgen(result):
                        async for message in result:
                            await context.write(message)
                    else:
                        await result
                finally:
                    if slot is not None:
                        self.leave(slot)
                    if watch:
                        self._watches.leave()

            return grpc.stream_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        unary: Any = handler.unary_unary
        if limited:
            return grpc.stream_stream_rpc_method_handler(
                self._answering(unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        async def unary_unary(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
            request = await receive(context)
            if request is _Refused:
                return None
            slot = admit(context) if limited else None
            if limited and slot is None:
                return None
            try:
                work = unary(request, context)
                del request
                return await work
            finally:
                if slot is not None:
                    self.leave(slot)

        return grpc.stream_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _answering(self, unary: Any) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
        """A data-plane unary method that writes its answer itself: its slot is held, and the
        answer's bytes counted, until the client has taken it (a client that never reads made
        the server keep every answer it asked for: 1,000 unread 1,024-image answers on two
        connections grew it by 586 MiB)."""

        async def answer(_requests: Any, context: grpc.aio.ServicerContext) -> None:
            request = await self._receive(context)
            if request is _Refused:
                return
            slot = self._admit(context)
            if slot is None:
                return
            _SLOT.set(slot)
            try:
                work = unary(request, context)
                del request
                response = await work
                if response is None:  # refused or failed: its status is set
                    return
                write = asyncio.ensure_future(context.write(response))
                write.add_done_callback(retrieve_error)
                if self.hold_answer is not None:
                    self.hold_answer(write, _ANSWER_COPIES * response.ByteSize())
                del response
                if not await self.write(write, self._write_timeout_s):
                    # No status can follow a stalled first message (headers and message are
                    # one batch): the call ends when its client reads or goes.
                    self._metrics.count_refusal(WRITE_STALLED)
            finally:
                self.leave(slot)

        return answer

    async def _receive(self, context: grpc.aio.ServicerContext) -> Any:
        """The call's one request message, or _Refused (its status set) when none came in time."""
        try:
            async with asyncio.timeout(self._message_timeout_s):
                request = await context.read()
        except TimeoutError:
            self._metrics.count_refusal(MESSAGE_TIMEOUT)
            _LOGGER.debug(
                "%s: no request message within %g s", context.peer(), self._message_timeout_s
            )
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(
                f"request: the message did not arrive within {self._message_timeout_s:g} s of the "
                "call's headers"
            )
            return _Refused
        if request is grpc.aio.EOF:  # type: ignore[attr-defined]
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("request: the call ended its request stream without a message")
            return _Refused
        return request

    def _admit(self, context: grpc.aio.ServicerContext) -> Slot | None:
        """Take a free or lent slot of the limit, or refuse the call (its status set, None)."""
        slot = self.take()
        if slot is None:
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(self.refusal)
        return slot

    @property
    def refusal(self) -> str:
        return (
            f"the server is handling {self._limit} calls, its limit "
            "(--max-concurrent-rpcs); retry with backoff"
        )

    def take(self) -> Slot | None:
        """A free or lent slot for a data-plane call (also the HTTP port's), or None, counted as
        a concurrency_limit refusal, when there is none; give it back with `leave`."""
        if self._limit is None or self.active < self._limit:
            self.active += 1
            return Slot()
        lent = next(iter(self._lent), None)  # the longest-stalled stream gives way to this call
        if lent is not None:
            del self._lent[lent]
            assert lent.taken is not None
            lent.taken.set_result(None)
            return Slot()
        self._metrics.count_refusal(CONCURRENCY_LIMIT)
        return None

    def leave(self, slot: Slot) -> None:
        self._lent.pop(slot, None)
        if slot.taken is None or not slot.taken.done():  # else its slot is another call's now
            self.active -= 1

    async def write(self, write: asyncio.Future[None], timeout_s: float) -> bool:
        """Wait for a stream's `write`: True once it is done, False when the stream must end
        because its client does not read (the write still pending after `timeout_s`, or its
        slot lent after LEND_AFTER_S and taken by another call meanwhile)."""
        done, _ = await asyncio.wait((write,), timeout=min(LEND_AFTER_S, timeout_s))
        slot = _SLOT.get()
        if done or timeout_s <= LEND_AFTER_S:
            return bool(done)
        if slot is None:  # no limit: nothing to lend
            done, _ = await asyncio.wait((write,), timeout=timeout_s - LEND_AFTER_S)
            return bool(done)
        taken = slot.taken = asyncio.get_running_loop().create_future()
        self._lent[slot] = None
        try:
            await asyncio.wait(
                (write, taken),
                timeout=timeout_s - LEND_AFTER_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not taken.done():  # not given away: the stream keeps its slot
                self._lent.pop(slot, None)
                slot.taken = None
        return write.done() and slot.taken is None


def retrieve_error(write: asyncio.Future[None]) -> None:
    """Fetch a finished write's error (the client went away), so that asyncio logs none."""
    if not write.cancelled():
        write.exception()
