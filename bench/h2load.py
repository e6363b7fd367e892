"""Drive a gRPC server with h2load (prebuilt frames) and read back its per-request log."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.frames import GRPC_HEADERS
from bench.stats import LatencySummary, rate, summarize_latencies

_LOGGER = logging.getLogger(__name__)
INSTALL_HINT = "h2load is missing: install it with `apt-get install -y nghttp2-client` (Debian)"
_REQUESTS_LINE = re.compile(
    r"requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored"
)


class H2loadError(RuntimeError):
    """h2load is missing, failed, or printed what we cannot read."""


@dataclass(frozen=True)
class RequestLog:
    """h2load's --log-file: one row per request (start µs since epoch, HTTP status, duration µs)."""

    start_us: np.ndarray
    status: np.ndarray
    duration_us: np.ndarray

    @classmethod
    def parse(cls, text: str) -> RequestLog:
        rows = [line.split("\t") for line in text.splitlines() if line.strip()]
        try:
            table = np.array([[int(field) for field in row[:3]] for row in rows], dtype=np.int64)
        except (ValueError, IndexError) as error:
            raise H2loadError(f"unreadable h2load log row: {error}") from error
        table = table.reshape(-1, 3)
        return cls(start_us=table[:, 0], status=table[:, 1], duration_us=table[:, 2])

    def ok(self) -> np.ndarray:
        return self.status == 200

    def span_s(self) -> float:
        """Seconds from the first request's start to the last successful response's end."""
        if not self.ok().any():
            return 0.0
        ends = self.start_us[self.ok()] + self.duration_us[self.ok()]
        return float(ends.max() - self.start_us.min()) / 1e6


@dataclass(frozen=True)
class LoadResult:
    """What one h2load run measured."""

    requests_ok: int
    requests_failed: int
    seconds: float
    requests_per_s: float
    images_per_s: float
    latency: LatencySummary

    def as_dict(self) -> dict[str, object]:
        return {
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
            "seconds": self.seconds,
            "requests_per_s": self.requests_per_s,
            "images_per_s": self.images_per_s,
            **self.latency.as_dict(),
        }


def parse_requests_line(stdout: str) -> dict[str, int]:
    """h2load's 'requests: N total, N started, N done, N succeeded, N failed, N errored' line."""
    match = _REQUESTS_LINE.search(stdout)
    if match is None:
        raise H2loadError(f"no 'requests:' summary in h2load output:\n{stdout[-2000:]}")
    return {key: int(value) for key, value in match.groupdict().items()}


def summarize(log: RequestLog, images_per_request: int) -> LoadResult:
    ok = log.ok()
    if not ok.any():
        raise H2loadError(f"no request succeeded (HTTP statuses seen: {sorted(set(log.status))})")
    seconds = log.span_s()
    count = int(ok.sum())
    return LoadResult(
        requests_ok=count,
        requests_failed=int((~ok).sum()),
        seconds=seconds,
        requests_per_s=rate(count, seconds),
        images_per_s=rate(count * images_per_request, seconds),
        latency=summarize_latencies(log.duration_us[ok] / 1000.0),
    )


def h2load_path() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise H2loadError(INSTALL_HINT)
    return path


def command(
    url: str,
    body: Path,
    *,
    connections: int,
    streams: int,
    duration_s: float | None = None,
    requests: int | None = None,
    log_file: Path | None = None,
    headers: tuple[str, ...] = GRPC_HEADERS,
    http1: bool = False,
) -> list[str]:
    """The h2load command line for `connections` × `streams` concurrent calls of one frame
    (or, with `http1`, of one HTTP/1.1 POST body: `streams` must then be 1)."""
    if http1 and streams != 1:
        raise ValueError("HTTP/1.1 has one request in flight per connection")
    args = [h2load_path(), "-c", str(connections), "-m", str(streams), "-d", str(body)]
    if http1:
        args.append("--h1")
    for header in headers:
        args += ["-H", header]
    if duration_s is not None:
        args += ["-D", f"{max(1, round(duration_s * 1000))}ms"]
    else:
        args += ["-n", str(requests or connections * streams)]
    if log_file is not None:
        args += ["--log-file", str(log_file)]
    return [*args, url]


def split_concurrency(concurrency: int, max_connections: int = 4) -> tuple[int, int]:
    """Concurrent calls as (connections, streams per connection), like a pooled client."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    connections = min(concurrency, max_connections)
    while concurrency % connections:
        connections -= 1
    return connections, concurrency // connections


def run(
    url: str,
    body: Path,
    *,
    concurrency: int,
    images_per_request: int,
    duration_s: float | None = None,
    requests: int | None = None,
    warmup_s: float = 0.0,
    max_connections: int = 4,
    headers: tuple[str, ...] = GRPC_HEADERS,
    http1: bool = False,
) -> LoadResult:
    """Warm up, then load the server for `duration_s` (or `requests` calls); latencies come from
    h2load's own per-request log. Over HTTP/1.1 each concurrent call is its own connection."""
    connections, streams = (
        (concurrency, 1) if http1 else split_concurrency(concurrency, max_connections)
    )
    if warmup_s > 0:
        _h2load(
            command(
                url,
                body,
                connections=connections,
                streams=streams,
                duration_s=warmup_s,
                headers=headers,
                http1=http1,
            )
        )
    with tempfile.TemporaryDirectory(prefix="h2load-") as scratch:
        log_path = Path(scratch) / "requests.tsv"
        stdout = _h2load(
            command(
                url,
                body,
                connections=connections,
                streams=streams,
                duration_s=duration_s,
                requests=requests,
                log_file=log_path,
                headers=headers,
                http1=http1,
            )
        )
        log = RequestLog.parse(log_path.read_text())
    counts = parse_requests_line(stdout)
    result = summarize(log, images_per_request)
    _LOGGER.debug("h2load %s: %s", counts, result)
    return result


def _h2load(args: list[str]) -> str:
    completed = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if completed.returncode != 0:
        raise H2loadError(f"h2load exited {completed.returncode}: {completed.stderr[-2000:]}")
    return completed.stdout
