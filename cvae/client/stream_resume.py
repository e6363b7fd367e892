"""Bookkeeping that lets an interrupted stream resume without losing or repeating images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import grpc
import numpy as np

from cvae.client.retry import RetryBudget
from cvae.client.types import Encoding, GenerateResult, build_request, result_from_response
from cvae.v1 import generator_pb2 as pb

_LOGGER = logging.getLogger(__name__)


class StreamProgress:
    """Tracks how much of a stream was delivered and how to ask for the rest.

    With client latents the rest is re-requested as the remaining labels and latents. With a seed
    (the client's, or the one the server reports in its first message) the whole request is sent
    again, since images depend on (labels, seed) only, and the delivered prefix is skipped.
    """

    def __init__(self, labels: Sequence[int], seed: int | None, latents: np.ndarray | None) -> None:
        self.labels = list(labels)
        self.seed = seed
        self.latents = None if latents is None else np.asarray(latents, dtype=np.float32)
        self.done = 0
        self.model_version: str | None = None
        self._base = 0  # offset, in the original request, of the current request's first image

    @property
    def complete(self) -> bool:
        """Every image delivered (a failure after that loses nothing)."""
        return 0 < len(self.labels) <= self.done

    def begin_attempt(self) -> None:
        """Call before each (re)issued request: with latents only the rest is asked for."""
        self._base = self.done if self.latents is not None else 0

    def remaining_labels(self) -> list[int]:
        return self.labels[self._base :]

    def remaining_latents(self) -> np.ndarray | None:
        return None if self.latents is None else self.latents[self._base :]

    def next_request(
        self,
        *,
        temperature: float,
        encoding: Encoding,
        model_version: str | None,
        chunk_size: int,
        omit_latents: bool,
    ) -> pb.GenerateRequest:
        """Begin an attempt and build the request for what is still missing."""
        self.begin_attempt()
        return build_request(
            self.remaining_labels(),
            seed=self.seed,
            temperature=temperature,
            latents=self.remaining_latents(),
            encoding=encoding,
            model_version=model_version or self.model_version,
            chunk_size=chunk_size,
            omit_latents=omit_latents,
        )

    def accept(self, result: GenerateResult) -> GenerateResult | None:
        """Map a message of the current request onto the original one; None if all seen."""
        if self.seed is None and self.latents is None:
            self.seed = result.seed
        # Pin the version that served the first images, so a hot reload cannot mix models.
        self.model_version = self.model_version or result.model_version
        start = self._base + result.offset
        end = start + len(result)
        if end <= self.done:
            return None
        skip = self.done - start
        if skip > 0:
            result = _slice(result, skip)
        result = replace(result, offset=self.done)
        self.done = end
        return result


class ResumableStream:
    """The resume loop's decisions, shared by both clients: each attempt's request and time
    left, where each message belongs, and whether a failure ends the stream or is resumed.
    Pure: the client sends, reads and sleeps."""

    def __init__(
        self,
        labels: Sequence[int],
        budget: RetryBudget,
        *,
        seed: int | None,
        temperature: float,
        latents: np.ndarray | None,
        encoding: Encoding,
        model_version: str | None,
        chunk_size: int,
        omit_latents: bool,
    ) -> None:
        self.progress = StreamProgress(labels, seed, latents)
        self._budget = budget
        self._temperature = temperature
        self._encoding = encoding
        self._model_version = model_version
        self._chunk_size = chunk_size
        self._omit_latents = omit_latents

    def next_attempt(self) -> tuple[pb.GenerateRequest, float]:
        """The request for what is still missing and the seconds it may take (raises
        DeadlineExceededError when none are left)."""
        request = self.progress.next_request(
            temperature=self._temperature,
            encoding=self._encoding,
            model_version=self._model_version,
            chunk_size=self._chunk_size,
            omit_latents=self._omit_latents,
        )
        return request, self._budget.remaining_s()

    def accept(self, response: pb.GenerateResponse) -> GenerateResult | None:
        """A message mapped onto the original request; None if all of it was yielded before."""
        return self.progress.accept(result_from_response(response))

    def wait_after(self, rpc_error: grpc.RpcError) -> float | None:
        """None: every image was delivered, the stream is done. Else the seconds to wait before
        resuming; raises the typed error when the failure is final."""
        if self.progress.complete:
            return None
        wait = self._budget.wait_after(rpc_error)
        _LOGGER.warning(
            "stream interrupted after %d images, resuming in %.3fs", self.progress.done, wait
        )
        return wait


def _slice(result: GenerateResult, skip: int) -> GenerateResult:
    return replace(
        result,
        images=result.images[skip:],
        labels=result.labels[skip:],
        latents=None if result.latents is None else result.latents[skip:],
        png=result.png[skip:],
    )
