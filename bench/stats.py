"""Latency percentiles and throughput from per-request timings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one scenario's request latencies, in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    Same definition as numpy's default ("linear", type 7 of Hyndman and Fan): for n sorted values
    the percentile sits at rank (n - 1) * q / 100, interpolated between its two neighbours.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size == 0:
        raise ValueError("percentile of no values")
    rank = (ordered.size - 1) * q / 100.0
    low = int(np.floor(rank))
    high = min(low + 1, ordered.size - 1)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def summarize_latencies(latencies_ms: Sequence[float] | np.ndarray) -> LatencySummary:
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latencies to summarize")
    return LatencySummary(
        count=int(values.size),
        mean_ms=float(values.mean()),
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p99_ms=percentile(values, 99),
        max_ms=float(values.max()),
    )


def rate(count: float, seconds: float) -> float:
    """Events per second; 0 when nothing was timed."""
    return count / seconds if seconds > 0 else 0.0


def back_to_back(call: Callable[[], object], seconds: float, callers: int) -> tuple[int, float]:
    """`callers` threads each making `call()` one after another for about `seconds`: (calls
    made, seconds they took)."""
    counts = [0] * callers
    deadline = time.perf_counter() + seconds

    def repeat(slot: int) -> None:
        while time.perf_counter() < deadline:
            call()
            counts[slot] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=repeat, args=(slot,)) for slot in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - started
