"""The blocking client: `Client("host:port").generate(labels, seed=...)` returns numpy arrays."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc
import numpy as np

from cvae.client.channel import TlsConfig, sync_channel
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


class Client:
    """A typed, retrying client of the cvae.v1.Generator service.

    `target` is "host:port" or "dns:///name:port" (calls are spread round-robin over every
    address the name resolves to). `timeout_s` is each call's default deadline, retries
    included. `model` names the model every call uses, for a server with several (empty: the
    server's default). Use as a context manager, or call `close()`.
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
        self._channel = sync_channel(target, tls)
        self._stub = pb_grpc.GeneratorStub(self._channel)
        self._rng = random.Random()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def model_info(
        self, model_version: str | None = None, timeout_s: float | None = None
    ) -> ModelInfo:
        """Describe the newest loaded model, or the pinned `model_version`."""
        request = pb.GetModelInfoRequest(model_version=model_version or "")
        request.model_name = self.model
        info = self._call(
            lambda t: self._stub.GetModelInfo(request, timeout=t), timeout_s, bool(model_version)
        )
        return model_info_from_proto(info)

    def generate(
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
        """One image per label; same (labels, seed, temperature, version), same bytes."""
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
        response = self._call(
            lambda t: self._stub.Generate(request, timeout=t), timeout_s, bool(model_version)
        )
        return result_from_response(response)

    def encode(
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
        response = self._call(lambda t: self._stub.Encode(request, timeout=t), timeout_s)
        return encode_result(response)

    def reconstruct(
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
        response = self._call(lambda t: self._stub.Reconstruct(request, timeout=t), timeout_s)
        return result_from_response(response)

    def restyle(
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
        response = self._call(lambda t: self._stub.Restyle(request, timeout=t), timeout_s)
        return result_from_response(response)

    def score(
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
        response = self._call(lambda t: self._stub.Score(request, timeout=t), timeout_s)
        return score_result(response)

    def stream(
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
    ) -> Iterator[GenerateResult]:
        """Generate a big job as chunks in order (`offset` says where each starts).

        A retryable failure mid-stream re-issues the request with the same seed (the server's
        when none was given) and skips what was already yielded, so no image is lost or repeated.
        `timeout_s` bounds the whole stream.
        """
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
                for response in call:
                    result = stream.accept(response)
                    if result is not None:
                        yield result
                return
            except grpc.RpcError as rpc_error:
                wait = stream.wait_after(rpc_error)
                if wait is None:
                    return
                time.sleep(wait)
            finally:
                call.cancel()

    def _call(
        self, attempt: Callable[[float], _T], timeout_s: float | None, pinned: bool = False
    ) -> _T:
        """Run `attempt(remaining_seconds)`, retrying until success or the deadline."""
        budget = self._budget(timeout_s, pinned)
        while True:
            try:
                return attempt(budget.remaining_s())
            except grpc.RpcError as rpc_error:
                time.sleep(budget.wait_after(rpc_error))

    def _budget(self, timeout_s: float | None, pinned: bool) -> RetryBudget:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        return RetryBudget(self.retry, timeout_s, self.target, pinned_version=pinned, rng=self._rng)
