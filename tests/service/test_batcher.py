"""DynamicBatcher on a real onnxruntime decoder: merging, splitting, bounds, deadlines, cancels."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.batcher import BatchingPolicy, DynamicBatcher
from service.errors import DEADLINE_TOO_SHORT, QUEUE_FULL, DeadlineExpired, Overloaded
from service.options import batching_policy, runtime_options
from service.runtime import ModelRuntime, load_runtime
from service.settings import ServiceSettings


class RecordingMetrics:
    """A BatcherMetrics sink that keeps what it was told."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.expired = 0
        self.depths: list[int] = []
        self.waits: list[float] = []

    def observe_queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def observe_batch(self, images: int, seconds: float) -> None:
        self.batches.append(images)

    def set_queue_depth(self, images: int) -> None:
        self.depths.append(images)

    def count_expired(self, images: int) -> None:
        self.expired += images


def _policy(**changes: Any) -> BatchingPolicy:
    """The shipped server's batching policy, with `changes`."""
    return dataclasses.replace(batching_policy(ServiceSettings()), **changes)


def _inputs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((count, 16), dtype=np.float32),
        rng.integers(0, 10, count).astype(np.int64),
    )


def _with_batcher(
    policy: BatchingPolicy, body: Callable[[DynamicBatcher, RecordingMetrics], Awaitable[Any]]
) -> tuple[Any, RecordingMetrics]:
    metrics = RecordingMetrics()

    async def main() -> Any:
        batcher = DynamicBatcher(policy, metrics)
        try:
            return await asyncio.wait_for(body(batcher, metrics), timeout=60)
        finally:
            batcher.close()

    return asyncio.run(main()), metrics


def test_requests_arriving_while_a_batch_runs_are_merged_into_the_next(
    runtime: ModelRuntime,
) -> None:
    requests = [_inputs(1, seed) for seed in range(6)]

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.run(runtime, z, y) for z, y in requests))

    results, metrics = _with_batcher(_policy(max_batch=64), body)
    assert metrics.batches == [1, 5]  # the first ran at once, the rest waited for it together
    for (z, y), images in zip(requests, results, strict=True):
        assert images.tobytes() == runtime.run(z, y).tobytes()  # merged == alone, byte for byte


def test_a_lone_request_never_waits_for_the_batching_delay(runtime: ModelRuntime) -> None:
    z, y = _inputs(3, 0)

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> np.ndarray:
        # With a 1000 s delay, waiting for it would trip wait_for's 60 s timeout.
        return await batcher.run(runtime, z, y)

    images, metrics = _with_batcher(_policy(max_delay_ms=1e6, decoder_slots=2), body)
    assert images.shape == (3, 28, 28)
    assert metrics.batches == [3]


class SlowRuntime:
    """The real runtime, held `hold_s` longer per call, counting calls that overlap."""

    def __init__(self, runtime: ModelRuntime, hold_s: float) -> None:
        self._runtime = runtime
        self._hold_s = hold_s
        self._lock = threading.Lock()
        self.batch_invariant = True
        self.slice_scale = 1.0
        self.active = 0
        self.most_at_once = 0

    def run(self, latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
        try:
            time.sleep(self._hold_s)
            return self._runtime.run(latents, labels)
        finally:
            with self._lock:
                self.active -= 1


class RecordingRuntime:
    """The real runtime, recording the rows of each call it makes."""

    def __init__(
        self, runtime: ModelRuntime, batch_invariant: bool = True, slice_scale: float = 1.0
    ) -> None:
        self._runtime = runtime
        self.batch_invariant = batch_invariant
        self.slice_scale = slice_scale
        self.calls: list[int] = []

    def run(self, latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
        self.calls.append(len(labels))
        return self._runtime.run(latents, labels)


@pytest.mark.parametrize(
    ("slice_rows", "max_batch", "batch_invariant", "calls", "scale"),
    [
        (4, 10, True, [4, 4, 2], 1.0),  # a full batch (10 of max 10): sliced
        (2, 10, True, [5, 5], 2.5),  # a graph 2.5x cheaper per row: 2.5x the rows per slice
        (4, 10, True, [2, 2, 2, 2, 2], 0.5),  # a dearer one: fewer
        (1, 10, True, [1] * 10, 0.1),  # never fewer than one row
        (0, 10, True, [10], 2.0),  # slices off
        (10, 10, True, [10], 1.0),  # one slice holds it all
        (4, 10, False, [10], 1.0),  # rows depend on the batch: never sliced
        (4, 16, True, [10], 1.0),  # not full (10 of max 16): one call
    ],
)
def test_full_batches_run_in_slices_of_independent_rows(
    runtime: ModelRuntime,
    slice_rows: int,
    max_batch: int,
    batch_invariant: bool,
    calls: list[int],
    scale: float,
) -> None:
    recording = RecordingRuntime(runtime, batch_invariant, scale)
    z, y = _inputs(10, 3)

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> np.ndarray:
        return await batcher.run(recording, z, y)  # type: ignore[arg-type]

    policy = _policy(max_batch=max_batch, decoder_slice=slice_rows)
    images, metrics = _with_batcher(policy, body)
    assert metrics.batches == [10]  # one batch, whatever the slices
    assert recording.calls == calls
    assert images.tobytes() == runtime.run(z, y).tobytes()


def _two_slots(max_delay_ms: float = 1.0) -> BatchingPolicy:
    return _policy(max_batch=64, max_delay_ms=max_delay_ms, decoder_slots=2)  # big: >= 32


def test_small_batches_never_run_side_by_side(runtime: ModelRuntime) -> None:
    slow = SlowRuntime(runtime, hold_s=0.05)
    requests = [_inputs(2, seed) for seed in range(6)]

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.run(slow, z, y) for z, y in requests))  # type: ignore[arg-type]

    results, metrics = _with_batcher(_two_slots(), body)
    assert metrics.batches == [2, 10]  # the rest waited for the first (50 ms), not the delay
    assert slow.most_at_once == 1
    for (z, y), images in zip(requests, results, strict=True):
        assert images.tobytes() == runtime.run(z, y).tobytes()


def test_big_batches_use_every_slot(runtime: ModelRuntime) -> None:
    slow = SlowRuntime(runtime, hold_s=0.05)
    requests = [_inputs(40, seed) for seed in range(2)]

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.run(slow, z, y) for z, y in requests))  # type: ignore[arg-type]

    results, metrics = _with_batcher(_two_slots(max_delay_ms=1e6), body)
    assert metrics.batches == [40, 40] and slow.most_at_once == 2
    for (z, y), images in zip(requests, results, strict=True):
        assert images.tobytes() == runtime.run(z, y).tobytes()


def test_a_small_request_behind_a_big_batch_waits_only_the_delay(runtime: ModelRuntime) -> None:
    slow = SlowRuntime(runtime, hold_s=0.3)
    big, small = _inputs(40, 1), _inputs(2, 2)

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> None:
        first = asyncio.ensure_future(batcher.run(slow, *big))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        await asyncio.gather(batcher.run(slow, *small), first)  # type: ignore[arg-type]

    _, metrics = _with_batcher(_two_slots(max_delay_ms=1.0), body)
    # It ran beside the big batch (2 at once), not after it as small batches do.
    assert slow.most_at_once == 2 and sorted(metrics.batches) == [2, 40]


def test_large_requests_are_split_into_max_batch_pieces(runtime: ModelRuntime) -> None:
    z, y = _inputs(10, 1)

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> np.ndarray:
        return await batcher.run(runtime, z, y)

    images, metrics = _with_batcher(_policy(max_batch=4), body)
    assert sorted(metrics.batches) == [2, 4, 4]  # two slots: pieces may finish in any order
    assert images.tobytes() == runtime.run(z, y).tobytes()


def test_batching_off_never_merges(runtime: ModelRuntime) -> None:
    requests = [_inputs(1, seed) for seed in range(4)]

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.run(runtime, z, y) for z, y in requests))

    _, metrics = _with_batcher(_policy(batching=False), body)
    assert metrics.batches == [1, 1, 1, 1]


def test_a_full_queue_refuses_at_once(runtime: ModelRuntime) -> None:
    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[Any]:
        running = batcher.run(runtime, *_inputs(1, 0))  # dispatched at once: not queued
        waiting = batcher.run(runtime, *_inputs(4, 1))  # fills the queue of 4
        refused = batcher.run(runtime, *_inputs(1, 2))
        return await asyncio.gather(running, waiting, refused, return_exceptions=True)

    results, metrics = _with_batcher(_policy(queue_size=4), body)
    assert results[0].shape == (1, 28, 28) and results[1].shape == (4, 28, 28)
    assert isinstance(results[2], Overloaded)
    assert "queue full (4 images waiting, limit 4)" in str(results[2])
    assert results[2].reason == QUEUE_FULL
    assert metrics.batches == [1, 4]


def test_waiting_for_room_instead_of_refusing(runtime: ModelRuntime) -> None:
    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[Any]:
        return await asyncio.gather(
            batcher.run(runtime, *_inputs(1, 0)),
            batcher.run(runtime, *_inputs(4, 1)),
            batcher.run(runtime, *_inputs(2, 2), wait_for_room=True),
        )

    results, metrics = _with_batcher(_policy(queue_size=4), body)
    assert [len(images) for images in results] == [1, 4, 2]
    assert sum(metrics.batches) == 7


def test_expired_work_is_dropped_not_computed(runtime: ModelRuntime) -> None:
    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[Any]:
        past = asyncio.get_running_loop().time() - 1.0
        return await asyncio.gather(
            batcher.run(runtime, *_inputs(1, 0)),
            batcher.run(runtime, *_inputs(3, 1), deadline=past),
            return_exceptions=True,
        )

    results, metrics = _with_batcher(_policy(), body)
    assert isinstance(results[1], DeadlineExpired)
    assert metrics.batches == [1]  # the expired 3 images never reached the decoder
    assert metrics.expired == 3


def test_a_cancelled_request_is_skipped(runtime: ModelRuntime) -> None:
    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> Any:
        first = asyncio.ensure_future(batcher.run(runtime, *_inputs(1, 0)))
        gone = asyncio.ensure_future(batcher.run(runtime, *_inputs(5, 1)))
        await asyncio.sleep(0)  # both queued, the first running
        gone.cancel()
        last = await batcher.run(runtime, *_inputs(2, 2))
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        return last

    last, metrics = _with_batcher(_policy(), body)
    assert last.shape == (2, 28, 28)
    assert 5 not in metrics.batches and 7 not in metrics.batches
    assert metrics.depths[-1] == 0


def test_a_model_whose_rows_depend_on_the_batch_is_never_merged(shared_repo: Path) -> None:
    runtime = load_runtime(
        shared_repo / "cvae-mnist" / "1", runtime_options(ServiceSettings(intra_op_threads=1))
    )
    runtime.batch_invariant = False  # as if the warm-up probe had found rows changing
    requests = [_inputs(1, seed) for seed in range(4)]

    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.run(runtime, z, y) for z, y in requests))

    _, metrics = _with_batcher(_policy(), body)
    assert metrics.batches == [1, 1, 1, 1]


def test_a_deadline_shorter_than_the_queued_work_is_refused_at_once(
    runtime: ModelRuntime,
) -> None:
    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[Any]:
        await batcher.run(runtime, *_inputs(8, 0))  # teaches the batcher the cost per image
        loop = asyncio.get_running_loop()
        running = batcher.run(runtime, *_inputs(1, 1))
        queued = batcher.run(runtime, *_inputs(64, 2))
        soon = batcher.run(runtime, *_inputs(1, 3), deadline=loop.time() + 1e-9)
        later = batcher.run(runtime, *_inputs(1, 4), deadline=loop.time() + 60.0)
        return await asyncio.gather(running, queued, soon, later, return_exceptions=True)

    # one slot: the 64 images must wait behind the running call instead of starting beside it
    results, metrics = _with_batcher(_policy(decoder_slots=1), body)
    assert isinstance(results[2], Overloaded)
    assert "of queued work is ahead and the deadline is" in str(results[2])
    assert results[2].reason == DEADLINE_TOO_SHORT
    assert [len(r) for r in (results[0], results[1], results[3])] == [1, 64, 1]
    assert metrics.expired == 0  # refused before queuing, not queued to expire


def test_admit_refuses_early_what_run_would_refuse(runtime: ModelRuntime) -> None:
    async def body(batcher: DynamicBatcher, _: RecordingMetrics) -> list[str]:
        loop = asyncio.get_running_loop()
        await batcher.run(runtime, *_inputs(5, 0))  # teaches the batcher the cost per image
        running = asyncio.ensure_future(batcher.run(runtime, *_inputs(1, 1)))
        queued = asyncio.ensure_future(batcher.run(runtime, *_inputs(4, 2)))
        await asyncio.sleep(0)  # one image running, four waiting in a queue of five
        outcomes = []
        for count, deadline in (
            (1, None),
            (2, None),
            (1, loop.time() + 1e-9),
            (1, loop.time() + 60),
        ):
            try:
                batcher.admit(count, deadline)
                outcomes.append("admitted")
            except Overloaded as refusal:
                outcomes.append(str(refusal))
        await asyncio.gather(running, queued)
        batcher.admit(5, loop.time() + 1e-9)  # the queue has drained: nothing is ahead
        return outcomes

    outcomes, metrics = _with_batcher(_policy(queue_size=5), body)
    assert outcomes[0] == "admitted" and outcomes[3] == "admitted"
    assert outcomes[1].startswith("queue full (4 images waiting, limit 5)")
    assert "of queued work is ahead and the deadline is" in outcomes[2]
    assert metrics.batches == [5, 1, 4]  # admit itself queues nothing
