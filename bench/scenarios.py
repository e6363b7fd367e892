"""The load scenarios, run the same way against any gRPC server through h2load."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import h2load, profile
from bench.grpccheck import CallCounter, CallCounts, CheckError, one_call_trailers, verified

_LOGGER = logging.getLogger(__name__)
SINGLE_CONCURRENCY = (1, 4, 16, 64, 256)


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    images_per_request: int
    encoding: str = "UINT8"
    requests: int | None = None
    """A fixed number of calls (a job) instead of a timed run."""

    def describe(self) -> str:
        return f"{self.concurrency} × {self.images_per_request} image(s), {self.encoding}"


def singles(
    encoding: str = "UINT8", concurrencies: tuple[int, ...] = SINGLE_CONCURRENCY
) -> list[Scenario]:
    return [Scenario(f"singles-c{c}-{encoding.lower()}", c, 1, encoding) for c in concurrencies]


def big(encoding: str = "UINT8") -> Scenario:
    return Scenario(f"big-2x256-{encoding.lower()}", 2, 256, encoding)


def job_as_unary_calls(images: int, chunk: int = 256) -> Scenario:
    """A job of `images` as back-to-back calls of `chunk` images (for servers without streams)."""
    return Scenario(
        f"job-{images}-as-calls-of-{chunk}", 1, chunk, "UINT8", requests=-(-images // chunk)
    )


@dataclass(frozen=True)
class Target:
    """A server under load: where to send, how to build a frame, how it counts calls."""

    server: str
    config: str
    url: str
    frame: Callable[[int, str], Path]
    counter: CallCounter | None


@dataclass(frozen=True)
class Timing:
    duration_s: float
    warmup_s: float


def run_plan(
    target: Target,
    plan: list[Scenario],
    timing: Timing,
    server_pid: int,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each scenario's row, with the CPU cores the server's process group used during it."""
    rows = []
    for scenario in plan:
        progress(f"{target.server} {target.config}: {scenario.describe()}")
        cpu_before, wall_before = profile.group_cpu_seconds(server_pid), time.monotonic()
        row = run(target, scenario, timing)
        wall = time.monotonic() - wall_before
        row["server_cpu_cores"] = (profile.group_cpu_seconds(server_pid) - cpu_before) / wall
        rows.append(row)
    return rows


def run(target: Target, scenario: Scenario, timing: Timing) -> dict[str, Any]:
    """One scenario: check a real call's grpc-status, load it, and cross-check server counters."""
    row: dict[str, Any] = {
        "server": target.server,
        "config": target.config,
        "scenario": scenario.name,
        "concurrency": scenario.concurrency,
        "images_per_request": scenario.images_per_request,
        "encoding": scenario.encoding,
        "tool": "h2load",
    }
    body = target.frame(scenario.images_per_request, scenario.encoding)
    try:
        trailers = one_call_trailers(target.url, body)
    except (CheckError, OSError) as error:
        row["error"] = f"one-call check failed: {error}"
        return row
    row["check_grpc_status"] = trailers.grpc_status
    if trailers.grpc_status != 0:
        row["error"] = f"grpc-status {trailers.grpc_status}: {trailers.grpc_message}"
        return row
    before = _read(target.counter)
    try:
        result = h2load.run(
            target.url,
            body,
            concurrency=scenario.concurrency,
            images_per_request=scenario.images_per_request,
            duration_s=None if scenario.requests else timing.duration_s,
            requests=scenario.requests,
            warmup_s=0.0 if scenario.requests else timing.warmup_s,
        )
    except h2load.H2loadError as error:
        row["error"] = str(error)
        return row
    row.update(result.as_dict())
    after = _read(target.counter)
    if before is not None and after is not None:
        delta = after - before
        row["server_counted"] = {
            "ok": delta.ok,
            "cancelled": delta.cancelled,
            "failed": delta.failed,
        }
        runs = 1 if scenario.requests or not timing.warmup_s else 2
        row["grpc_status_verified"] = verified(
            delta, result.requests_ok, scenario.concurrency, runs
        )
    _LOGGER.info(
        "%s %s %s: %.0f images/s, p50 %.2f ms, p99 %.2f ms",
        target.server,
        target.config,
        scenario.describe(),
        result.images_per_s,
        result.latency.p50_ms,
        result.latency.p99_ms,
    )
    return row


def _read(counter: CallCounter | None) -> CallCounts | None:
    if counter is None:
        return None
    try:
        return counter.read()
    except OSError as error:
        _LOGGER.warning("could not scrape %s: %s", counter.metrics_url, error)
        return None
