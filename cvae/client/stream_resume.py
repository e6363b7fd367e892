"""Bookkeeping that lets an interrupted stream resume without losing or repeating images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from cvae.client.types import Encoding, GenerateResult, build_request
from cvae.v1 import generator_pb2 as pb


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


def _slice(result: GenerateResult, skip: int) -> GenerateResult:
    return replace(
        result,
        images=result.images[skip:],
        labels=result.labels[skip:],
        latents=None if result.latents is None else result.latents[skip:],
        png=result.png[skip:],
    )
