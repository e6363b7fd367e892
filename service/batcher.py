"""DynamicBatcher: merge concurrent requests into decoder calls, with a bounded queue.

Policy, per event loop:
- a request that finds a free runtime slot and nothing running is dispatched at once (a lone
  request never waits for a batching delay);
- while a batch runs, arriving requests accumulate and the next batch takes all of them, up to
  `max_batch` images, as soon as a slot is free;
- with more than one slot, a second batch starts while another runs only when it is big (at
  least half of `max_batch` images: big work uses every slot), or when its oldest request has
  waited `max_delay` behind a big running batch. Small batches never run side by side: a small
  batch takes a few ms, the next one forms while it runs, and the event loop keeps a core for the
  calls themselves (measured: 64 concurrent single-image callers, docs/benchmarks.md);
- requests larger than `max_batch` are split into pieces; a request's pieces are never merged
  with another version's; pieces whose caller's deadline has passed, or who went away, are
  dropped instead of computed;
- a decoder thread runs a full batch (`max_batch` images) `decoder_slice` rows per onnxruntime
  call and yields the CPU between calls (rows that do not depend on their batch only), so that
  the server's I/O threads find a core within one slice while every core decodes big calls; a
  cheaper graph (the encoder) runs as many rows per call as take the decoder's slice time;
- at most `queue_size` images wait; beyond that a request is refused at once (`Overloaded`);
  so is a request whose deadline would pass while the work already queued ahead of it runs
  (estimated from recent decoder calls), instead of being accepted only to expire.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.errors import (
    DEADLINE_TOO_SHORT,
    QUEUE_FULL,
    DeadlineExpired,
    Overloaded,
    ServiceError,
)
from service.priority import lower_this_thread

_LOGGER = logging.getLogger(__name__)
_SMOOTHING = 0.2  # weight of the newest batch in the seconds-per-image average


@dataclass(frozen=True)
class BatchingPolicy:
    """The batcher's knobs: the ServiceSettings fields of the same names, which document them.

    No defaults here: service.options.batching_policy builds it from the settings.
    """

    max_batch: int
    max_delay_ms: float
    batching: bool
    queue_size: int
    decoder_slots: int
    decoder_niceness: int
    decoder_slice: int

    @property
    def max_delay_s(self) -> float:
        return self.max_delay_ms / 1000.0

    @property
    def big_batch(self) -> int:
        """Images from which a batch may run beside another one."""
        return max(1, self.max_batch // 2)


class Graph(Protocol):
    """What the batcher runs: a model graph taking (rows, labels) and giving one array per row.

    Pieces of different graphs never share a call (each version's decoder, and its encoder, is
    its own object).
    """

    batch_invariant: bool
    # How many of its rows take as long as one of the decoder's: a slice of `decoder_slice`
    # decoder rows is that many times as many rows of this graph (1 for the decoder itself).
    slice_scale: float

    def run(self, rows: np.ndarray, labels: np.ndarray, /) -> np.ndarray: ...


class BatcherMetrics(Protocol):
    """Where the batcher reports what it does (service.metrics provides the Prometheus one)."""

    def observe_queue_wait(self, seconds: float) -> None: ...
    def observe_batch(self, images: int, seconds: float) -> None: ...
    def set_queue_depth(self, images: int) -> None: ...
    def count_expired(self, images: int) -> None: ...


class NoMetrics:
    """A sink that records nothing."""

    def observe_queue_wait(self, seconds: float) -> None:
        pass

    def observe_batch(self, images: int, seconds: float) -> None:
        pass

    def set_queue_depth(self, images: int) -> None:
        pass

    def count_expired(self, images: int) -> None:
        pass


class _Piece:
    """Up to max_batch rows of one request, waiting for a decoder call."""

    __slots__ = ("deadline", "enqueued", "future", "labels", "latents", "runtime")

    def __init__(
        self,
        runtime: Graph,
        latents: np.ndarray,
        labels: np.ndarray,
        future: asyncio.Future[np.ndarray],
        deadline: float | None,
        enqueued: float,
    ) -> None:
        self.runtime = runtime
        self.latents = latents  # (n, latent_dim) float32
        self.labels = labels  # (n,) int64
        self.future = future
        self.deadline = deadline
        self.enqueued = enqueued


class DynamicBatcher:
    """Runs decoder calls for requests on one event loop, merging them as the policy says."""

    def __init__(self, policy: BatchingPolicy, metrics: BatcherMetrics | None = None) -> None:
        self._policy = policy
        self._metrics: BatcherMetrics = metrics or NoMetrics()
        self._queue: collections.deque[_Piece] = collections.deque()
        self._queued_images = 0
        self._running = 0
        self._big_running = 0  # running batches of at least policy.big_batch images
        self._seconds_per_image: float | None = None  # moving average of recent batches
        self._timer: asyncio.TimerHandle | None = None
        self._room = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=policy.decoder_slots,
            thread_name_prefix="decoder",
            initializer=lower_this_thread,
            initargs=(policy.decoder_niceness,),
        )

    def admit(self, count: int, deadline: float | None) -> None:
        """Raise Overloaded now if `count` images would be refused: callers check this before
        preparing the work (sampling latents), so that under overload a refusal costs little."""
        if self._queued_images + count > self._policy.queue_size:
            raise Overloaded(self._queue_full(), QUEUE_FULL)
        self._refuse_if_late(deadline, asyncio.get_running_loop().time())

    async def run(
        self,
        runtime: Graph,
        latents: np.ndarray,
        labels: np.ndarray,
        deadline: float | None = None,
        wait_for_room: bool = False,
    ) -> np.ndarray:
        """Images float32 (n, H, W) for latents (n, latent_dim) and labels (n,).

        `deadline` is in `loop.time()` seconds. Raises Overloaded when the queue has no room
        (or waits for room with `wait_for_room`), DeadlineExpired when dropped unrun.
        """
        count = len(labels)
        while self._queued_images + count > self._policy.queue_size:
            if not wait_for_room or count > self._policy.queue_size:
                raise Overloaded(self._queue_full(), QUEUE_FULL)
            self._room.clear()
            await self._room.wait()
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._refuse_if_late(deadline, now)
        step = self._policy.max_batch
        futures = []
        for start in range(0, count, step):
            future: asyncio.Future[np.ndarray] = loop.create_future()
            piece = _Piece(
                runtime,
                latents[start : start + step],
                labels[start : start + step],
                future,
                deadline,
                now,
            )
            self._queue.append(piece)
            futures.append(future)
        self._queued_images += count
        self._metrics.set_queue_depth(self._queued_images)
        self._dispatch()
        try:
            if len(futures) == 1:
                return await futures[0]
            parts = await asyncio.gather(*futures)
            return np.concatenate(parts)
        except BaseException:
            for future in futures:  # the caller went away: its waiting pieces are skipped
                future.cancel()
            raise

    def _queue_full(self) -> str:
        return (
            f"queue full ({self._queued_images} images waiting, limit "
            f"{self._policy.queue_size}); retry later"
        )

    def _refuse_if_late(self, deadline: float | None, now: float) -> None:
        """Raise Overloaded if a request with `deadline` would expire behind the queued work."""
        if deadline is None or not self._queued_images or self._seconds_per_image is None:
            return
        ahead = self._queued_images * self._seconds_per_image / self._policy.decoder_slots
        if now + ahead > deadline:
            raise Overloaded(
                f"about {ahead * 1000:.0f} ms of queued work is ahead and the deadline is "
                f"{max(deadline - now, 0) * 1000:.0f} ms away; retry later",
                DEADLINE_TOO_SHORT,
            )

    def close(self) -> None:
        """Stop the decoder threads once the running batches end."""
        if self._timer is not None:
            self._timer.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _dispatch(self) -> None:
        policy = self._policy
        loop = asyncio.get_running_loop()
        while self._queue and self._running < policy.decoder_slots:
            now = loop.time()
            if self._running and policy.batching and self._queued_images < policy.big_batch:
                if not self._big_running:  # only small batches run: the next forms meanwhile
                    return
                due = self._queue[0].enqueued + policy.max_delay_s
                if now < due:  # a big batch is running: let this one fill up a little
                    if self._timer is None:
                        self._timer = loop.call_at(due, self._on_timer)
                    return
            batch = self._take_batch(now)
            if batch:
                self._start(batch, now)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take_batch(self, now: float) -> list[_Piece]:
        """Pop the next batch: one version, at most max_batch images, live pieces only."""
        policy = self._policy
        batch: list[_Piece] = []
        images = 0
        expired = 0
        while self._queue:
            piece = self._queue[0]
            size = len(piece.labels)
            if batch and (
                not policy.batching
                or not piece.runtime.batch_invariant
                or piece.runtime is not batch[0].runtime
                or images + size > policy.max_batch
            ):
                break
            self._queue.popleft()
            self._queued_images -= size
            if piece.future.done():  # cancelled by a caller who went away
                continue
            if piece.deadline is not None and piece.deadline <= now:
                expired += size
                piece.future.set_exception(DeadlineExpired("deadline passed while queued"))
                continue
            batch.append(piece)
            images += size
        if expired:
            self._metrics.count_expired(expired)
        self._metrics.set_queue_depth(self._queued_images)
        self._room.set()
        return batch

    def _start(self, batch: list[_Piece], now: float) -> None:
        for piece in batch:
            self._metrics.observe_queue_wait(now - piece.enqueued)
        self._running += 1
        self._big_running += self._is_big(batch)
        loop = asyncio.get_running_loop()
        # Only full batches are sliced: they hold a core longest, and only big batches run side
        # by side; smaller ones (many small calls) keep their one onnxruntime call.
        full = _images_in(batch) >= self._policy.max_batch
        slice_rows = self._policy.decoder_slice if full else 0
        job = loop.run_in_executor(self._executor, _decode, batch, slice_rows)
        job.add_done_callback(lambda done: self._finish(batch, done))

    def _is_big(self, batch: list[_Piece]) -> bool:
        return _images_in(batch) >= self._policy.big_batch

    def _finish(self, batch: list[_Piece], job: asyncio.Future[tuple[np.ndarray, float]]) -> None:
        self._running -= 1
        self._big_running -= self._is_big(batch)
        try:
            images, seconds = job.result()
        except Exception as error:
            _LOGGER.exception("decoder call failed for a batch of %d pieces", len(batch))
            failure = ServiceError(f"decoder failed: {error}")
            for piece in batch:
                if not piece.future.done():
                    piece.future.set_exception(failure)
        else:
            self._metrics.observe_batch(len(images), seconds)
            per_image = seconds / max(len(images), 1)
            previous = self._seconds_per_image
            self._seconds_per_image = (
                per_image if previous is None else previous + _SMOOTHING * (per_image - previous)
            )
            offset = 0
            for piece in batch:
                size = len(piece.labels)
                if not piece.future.done():
                    piece.future.set_result(images[offset : offset + size])
                offset += size
        self._dispatch()


def _images_in(batch: list[_Piece]) -> int:
    return sum(len(piece.labels) for piece in batch)


def _decode(batch: list[_Piece], slice_rows: int) -> tuple[np.ndarray, float]:
    """In a decoder thread: merge the pieces, run the model, time it.

    With `slice_rows`, a batch of independent rows runs that many decoder rows' worth per
    onnxruntime call (the graph's `slice_scale` times as many of its own rows) and the thread
    yields the CPU between calls: on a machine whose cores all decode, the server's I/O threads
    then wait for a core at most one slice, not a whole batch or a scheduler tick.
    """
    if len(batch) == 1:
        latents, labels = batch[0].latents, batch[0].labels
    else:
        latents = np.concatenate([piece.latents for piece in batch])
        labels = np.concatenate([piece.labels for piece in batch])
    runtime = batch[0].runtime
    if slice_rows > 0:
        slice_rows = max(1, round(slice_rows * runtime.slice_scale))
    started = time.perf_counter()
    if slice_rows <= 0 or len(labels) <= slice_rows or not runtime.batch_invariant:
        images = runtime.run(latents, labels)
    else:
        slices = []
        for start in range(0, len(labels), slice_rows):
            stop = start + slice_rows
            slices.append(runtime.run(latents[start:stop], labels[start:stop]))
            _yield_cpu()
        images = np.concatenate(slices)
    return images, time.perf_counter() - started


def _yield_cpu() -> None:
    """Let runnable threads on this core go first (a no-op where sched_yield is missing)."""
    if hasattr(os, "sched_yield"):
        os.sched_yield()
