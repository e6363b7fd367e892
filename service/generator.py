"""The data plane: a validated job in, images out. Knows no protocol (no protobuf, no gRPC)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import numpy as np

from service.batcher import DynamicBatcher
from service.runtime import ModelRuntime
from service.sampler import LatentSampler, draw_seed


class PixelFormat(enum.Enum):
    """How images leave the service."""

    FLOAT32 = "float32"
    UINT8 = "uint8"
    PNG = "png"


@dataclass(frozen=True)
class GenerationJob:
    """One request, decoded and checked against the model it will run on."""

    labels: np.ndarray  # (n,) each in [0, num_classes): int64, or compact (uint8) in a stream
    latents: np.ndarray | None  # (n, latent_dim) float32, finite; None: draw from seed
    seed: int | None  # None: the server draws one (ignored when latents are given)
    temperature: float  # > 0 scale of the prior (0 on the wire already became 1.0)
    pixel_format: PixelFormat
    chunk_size: int  # images per streamed chunk
    omit_latents: bool


@dataclass(frozen=True)
class GeneratedImages:
    """Images of one request, or of one chunk of a streamed request."""

    runtime: ModelRuntime
    images: np.ndarray  # (n, H, W) float32 in [0, 1]
    labels: np.ndarray  # (n,) int64
    latents: np.ndarray  # (n, latent_dim) float32: the z actually used
    seed: int | None  # the seed the latents came from; None when the caller gave them
    offset: int  # index of images[0] in the request


class ImageGenerator:
    """Turns jobs into images through the batcher; latents come from the sampler or the job."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher

    async def generate(
        self, runtime: ModelRuntime, job: GenerationJob, deadline: float | None
    ) -> GeneratedImages:
        """All images of `job` in one piece (split and merged by the batcher as it sees fit)."""
        self._batcher.admit(len(job.labels), deadline)
        seed, rows = _latent_rows(runtime, job)
        latents = rows(0, len(job.labels))
        images = await self._batcher.run(runtime, latents, job.labels, deadline)
        return GeneratedImages(runtime, images, job.labels, latents, seed, 0)

    async def stream(
        self, runtime: ModelRuntime, job: GenerationJob, deadline: float | None
    ) -> AsyncGenerator[GeneratedImages, None]:
        """Chunks of `job` in order; the next chunk is computed while the caller sends this one.

        At most two chunks exist at a time, whatever the job size. When the caller stops
        iterating (the client cancelled), the pending chunk is cancelled and nothing more runs.
        """
        count = len(job.labels)
        seed, rows = _latent_rows(runtime, job)

        def submit(start: int, wait_for_room: bool) -> asyncio.Task[GeneratedImages]:
            stop = min(start + job.chunk_size, count)
            labels = job.labels[start:stop].astype(np.int64)  # the stream's stay compact
            return asyncio.ensure_future(
                self._chunk(
                    runtime, rows(start, stop), labels, deadline, wait_for_room, start, seed
                )
            )

        pending = submit(0, wait_for_room=False)  # a full queue refuses the stream at once
        try:
            for start in range(job.chunk_size, count + job.chunk_size, job.chunk_size):
                chunk = await pending
                if start < count:
                    pending = submit(start, wait_for_room=True)
                yield chunk
        finally:
            if pending.done():
                if not pending.cancelled():
                    pending.exception()  # retrieved: a failure after the caller left is moot
            else:
                pending.cancel()

    async def _chunk(
        self,
        runtime: ModelRuntime,
        latents: np.ndarray,
        labels: np.ndarray,
        deadline: float | None,
        wait_for_room: bool,
        offset: int,
        seed: int | None,
    ) -> GeneratedImages:
        images = await self._batcher.run(runtime, latents, labels, deadline, wait_for_room)
        return GeneratedImages(runtime, images, labels, latents, seed, offset)


def _latent_rows(
    runtime: ModelRuntime, job: GenerationJob
) -> tuple[int | None, Callable[[int, int], np.ndarray]]:
    """The seed of the job's latents (None: the job gave them; otherwise its own or a drawn one)
    and `rows(start, stop)`, the latents of those images; call it for consecutive ranges."""
    if job.latents is not None:
        given = job.latents
        return None, lambda start, stop: given[start:stop]
    seed = job.seed if job.seed is not None else draw_seed()
    sampler = LatentSampler(runtime.spec.latent_dim, seed, job.temperature)
    return seed, lambda start, stop: sampler.take(stop - start)
