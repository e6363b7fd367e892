"""The asyncio client: the same API as `Client`, on grpc.aio."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
import numpy as np

from cvae.client.channel import TlsConfig, aio_channel
from cvae.client.images import (
    EncodeResult,
    Images,
    ScoreResult,
    encode_request,
    encode_result,
    reconstruct_request,
    restyle_request,
    score_request,
    score_result,
)
from cvae.client.retry import RetryBudget, RetryPolicy
from cvae.client.stream_resume import ResumableStream
from cvae.client.types import (
    Encoding,
    GenerateResult,
    ModelInfo,
    build_request,
    model_info_from_proto,
    result_from_response,
)
from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")


class AsyncClient:
    """`Client` for asyncio: `await client.generate(...)`, `async for part in client.stream(...)`.

    Create it inside a running event loop; use `async with` or `await close()`.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        tls: TlsConfig | None = None,
        model: str = "",
    ) -> None:
        self.target = target
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._channel = aio_channel(target, tls)
        self._stub = pb_grpc.GeneratorStub(self._channel)
        self._rng = random.Random()

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def model_info(
        self, model_version: str | None = None, timeout_s: float | None = None
    ) -> ModelInfo:
        request = pb.GetModelInfoRequest(model_version=model_version or "")
        request.model_name = self.model
        info = await self._call(
            lambda t: self._stub.GetModelInfo(request, timeout=t), timeout_s, bool(model_version)
        )
        return model_info_from_proto(info)

    async def generate(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        seed: int | None = None,
        temperature: float = 1.0,
        latents: np.ndarray | None = None,
        encoding: Encoding = Encoding.UINT8,
        model_version: str | None = None,
        omit_latents: bool = False,
        timeout_s: float | None = None,
    ) -> GenerateResult:
        request = build_request(
            labels,
            seed=seed,
            temperature=temperature,
            latents=latents,
            encoding=encoding,
            model_version=model_version,
            omit_latents=omit_latents,
        )
        request.model_name = self.model
        response = await self._call(
            lambda t: self._stub.Generate(request, timeout=t), timeout_s, bool(model_version)
        )
        return result_from_response(response)

    async def encode(
        self,
        images: Images,
        labels: Sequence[int] | np.ndarray,
        *,
        model_version: str | None = None,
        timeout_s: float | None = None,
    ) -> EncodeResult:
        """Q(z|x,y) of real images (uint8, float32 in [0, 1], or PNG bytes) and their labels."""
        request = encode_request(images, labels, model_version)
        request.model_name = self.model
        response = await self._call(lambda t: self._stub.Encode(request, timeout=t), timeout_s)
        return encode_result(response)

    async def reconstruct(
        self,
        images: Images,
        labels: Sequence[int] | np.ndarray,
        *,
        encoding: Encoding = Encoding.UINT8,
        model_version: str | None = None,
        omit_latents: bool = False,
        timeout_s: float | None = None,
    ) -> GenerateResult:
        """Each image decoded from its posterior mean under its own label."""
        request = reconstruct_request(images, labels, encoding, model_version, omit_latents)
        request.model_name = self.model
        response = await self._call(lambda t: self._stub.Reconstruct(request, timeout=t), timeout_s)
        return result_from_response(response)

    async def restyle(
        self,
        images: Images,
        labels: Sequence[int] | np.ndarray,
        target_labels: Sequence[int] | np.ndarray,
        *,
        encoding: Encoding = Encoding.UINT8,
        model_version: str | None = None,
        omit_latents: bool = False,
        timeout_s: float | None = None,
    ) -> GenerateResult:
        """Every image in every target label: len(images) x len(target_labels) images,
        image-major (image i in target_labels[j] is row i * T + j)."""
        request = restyle_request(
            images, labels, target_labels, encoding, model_version, omit_latents
        )
        request.model_name = self.model
        response = await self._call(lambda t: self._stub.Restyle(request, timeout=t), timeout_s)
        return result_from_response(response)

    async def score(
        self,
        images: Images,
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        samples: int = 1,
        seed: int | None = None,
        model_version: str | None = None,
        timeout_s: float | None = None,
    ) -> ScoreResult:
        """The bound on log p(x|y) under every label (k `samples`; 1: the ELBO), p(y|x), and
        the predicted label; seeded (the server draws a seed when none is given)."""
        request = score_request(images, labels, samples, seed, model_version)
        request.model_name = self.model
        response = await self._call(lambda t: self._stub.Score(request, timeout=t), timeout_s)
        return score_result(response)

    async def stream(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        seed: int | None = None,
        temperature: float = 1.0,
        latents: np.ndarray | None = None,
        encoding: Encoding = Encoding.UINT8,
        model_version: str | None = None,
        chunk_size: int = 0,
        omit_latents: bool = False,
        timeout_s: float | None = None,
    ) -> AsyncIterator[GenerateResult]:
        """Chunks in order; resumes after a retryable failure like `Client.stream`."""
        stream = ResumableStream(
            list(labels),
            self._budget(timeout_s, bool(model_version)),
            seed=seed,
            temperature=temperature,
            latents=latents,
            encoding=encoding,
            model_version=model_version,
            chunk_size=chunk_size,
            omit_latents=omit_latents,
        )
        while True:
            request, remaining = stream.next_attempt()
            request.model_name = self.model
            call = self._stub.GenerateStream(request, timeout=remaining)
            try:
                async for response in call:
                    result = stream.accept(response)
                    if result is not None:
                        yield result
                return
            except grpc.RpcError as rpc_error:
                wait = stream.wait_after(rpc_error)
                if wait is None:
                    return
                await asyncio.sleep(wait)
            finally:
                call.cancel()

    async def _call(
        self,
        attempt: Callable[[float], Awaitable[_T]],
        timeout_s: float | None,
        pinned: bool = False,
    ) -> _T:
        budget = self._budget(timeout_s, pinned)
        while True:
            try:
                return await attempt(budget.remaining_s())
            except grpc.RpcError as rpc_error:
                await asyncio.sleep(budget.wait_after(rpc_error))

    def _budget(self, timeout_s: float | None, pinned: bool) -> RetryBudget:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        return RetryBudget(self.retry, timeout_s, self.target, pinned_version=pinned, rng=self._rng)
