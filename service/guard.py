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
  slot: Kubernetes probes answer whatever Generate traffic does.

Both refusals are counted in cvae_refusals_total{reason}.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.errors import CONCURRENCY_LIMIT, MESSAGE_TIMEOUT
from service.metrics import ServiceMetrics

_LOGGER = logging.getLogger(__name__)
# Services whose calls take no slot of the limit: probes and tooling must always get through.
_UNLIMITED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
_Refused = object()  # the call was refused before its handler ran


class CallGuard(grpc.aio.ServerInterceptor):
    """Bounded request-message wait and a concurrency limit on the data plane (module doc)."""

    def __init__(
        self, limit: int | None, message_timeout_s: float, metrics: ServiceMetrics
    ) -> None:
        self._limit = limit
        self._message_timeout_s = message_timeout_s
        self._metrics = metrics
        self.active = 0  # data-plane calls between their message and their handler's end
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        known = self._guarded.get(method)
        if known is None or known[0] is not handler:
            known = self._guarded[method] = (handler, self._guard(method, handler))
        return known[1]

    def _guard(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        limited = self._limit is not None and not method.startswith(_UNLIMITED_PREFIXES)
        receive, admit = self._receive, self._admit
        if handler.response_streaming:
            streaming: Any = handler.unary_stream  # grpc-stubs types it for the sync server

            async def unary_stream(_requests: Any, context: grpc.aio.ServicerContext) -> None:
                request = await receive(context)
                if request is _Refused or (limited and not admit(context)):
                    return
                try:
                    result = streaming(request, context)
                    del request  # the handler may drop it (a stream's request can be big)
                    if inspect.isasyncgen(result):
                        async for message in result:
                            await context.write(message)
                    else:
                        await result
                finally:
                    if limited:
                        self.active -= 1

            return grpc.stream_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        unary: Any = handler.unary_unary

        async def unary_unary(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
            request = await receive(context)
            if request is _Refused or (limited and not admit(context)):
                return None
            try:
                work = unary(request, context)
                del request
                return await work
            finally:
                if limited:
                    self.active -= 1

        return grpc.stream_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

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

    def _admit(self, context: grpc.aio.ServicerContext) -> bool:
        """Take a slot of the limit, or refuse the call (its status set) when none is free."""
        assert self._limit is not None
        if self.active >= self._limit:
            self._metrics.count_refusal(CONCURRENCY_LIMIT)
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(
                f"the server is handling {self._limit} calls, its limit "
                "(--max-concurrent-rpcs); retry with backoff"
            )
            return False
        self.active += 1
        return True
