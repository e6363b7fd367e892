"""gRPC outcomes that h2load does not see: the grpc-status trailer, and the server's own counts.

h2load counts HTTP status only, and a failed gRPC call still answers HTTP 200 (the error is in
the `grpc-status` trailer). So each scenario is checked twice: one call of the exact frame through
`nghttp -v` whose trailers are read, and the server's Prometheus counters of OK and failed calls
before and after the load.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.frames import GRPC_HEADERS

_STATUS = re.compile(r"\bgrpc-status: (\d+)")
_MESSAGE = re.compile(r"\bgrpc-message: (.*)")


class CheckError(RuntimeError):
    """A call did not end in grpc-status 0, or the check itself could not run."""


@dataclass(frozen=True)
class TrailerCheck:
    grpc_status: int
    grpc_message: str


def parse_trailers(verbose_output: str) -> TrailerCheck:
    """The grpc-status (and message) that `nghttp -v` printed for one call."""
    statuses = _STATUS.findall(verbose_output)
    if not statuses:
        raise CheckError("no grpc-status trailer in the response")
    messages = _MESSAGE.findall(verbose_output)
    return TrailerCheck(int(statuses[-1]), messages[-1].strip() if messages else "")


def one_call_trailers(url: str, body: Path, timeout_s: float = 60) -> TrailerCheck:
    """POST one gRPC frame with nghttp (same package as h2load) and read its trailers."""
    nghttp = shutil.which("nghttp")
    if nghttp is None:
        raise CheckError("nghttp is missing: `apt-get install -y nghttp2-client`")
    args = [nghttp, "-v", "-d", str(body)]
    for header in GRPC_HEADERS:
        args += ["-H", header]
    completed = subprocess.run([*args, url], capture_output=True, timeout=timeout_s, check=False)
    return parse_trailers(completed.stdout.decode("utf-8", "replace"))


def scrape(url: str, timeout_s: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode("utf-8")  # type: ignore[no-any-return]


def sum_samples(metrics_text: str, name: str, match: Callable[[dict[str, str]], bool]) -> float:
    """Sum of the samples called `name` whose labels satisfy `match`.

    A counter's sample is found with or without the `_total` suffix (the parser adds it to
    counters exposed without it, as Triton's are).
    """
    base = name.removesuffix("_total")
    names = {base, base + "_total"}
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in names and match(sample.labels):
                total += sample.value
    return total


@dataclass(frozen=True)
class CallCounts:
    """Finished calls as a server counts them."""

    ok: float
    cancelled: float
    """Calls the client abandoned: h2load cancels the calls still in flight when its time is up."""
    failed: float
    """Every other non-OK outcome."""

    def __sub__(self, other: CallCounts) -> CallCounts:
        return CallCounts(
            self.ok - other.ok, self.cancelled - other.cancelled, self.failed - other.failed
        )


@dataclass(frozen=True)
class CallCounter:
    """How a server counts finished calls, read from one /metrics scrape."""

    metrics_url: str
    count: Callable[[str], CallCounts]

    def read(self) -> CallCounts:
        return self.count(scrape(self.metrics_url))


def cvae_counts(method: str) -> Callable[[str], CallCounts]:
    """cvae_requests_total{method, code}: OK, CANCELLED, and every other code."""

    def by_code(text: str, wanted: Callable[[str], bool]) -> float:
        return sum_samples(
            text,
            "cvae_requests_total",
            lambda labels: labels.get("method") == method and wanted(labels.get("code", "")),
        )

    def count(text: str) -> CallCounts:
        return CallCounts(
            ok=by_code(text, lambda code: code == "OK"),
            cancelled=by_code(text, lambda code: code == "CANCELLED"),
            failed=by_code(text, lambda code: code not in ("OK", "CANCELLED")),
        )

    return count


def triton_counts(model: str) -> Callable[[str], CallCounts]:
    """nv_inference_request_success and nv_inference_request_failure{reason} of one model."""

    def count(text: str) -> CallCounts:
        def failures(wanted: Callable[[str], bool]) -> float:
            return sum_samples(
                text,
                "nv_inference_request_failure",
                lambda labels: labels.get("model") == model and wanted(labels.get("reason", "")),
            )

        return CallCounts(
            ok=sum_samples(
                text, "nv_inference_request_success", lambda labels: labels.get("model") == model
            ),
            cancelled=failures(lambda reason: reason == "CANCELED"),
            failed=failures(lambda reason: reason != "CANCELED"),
        )

    return count


def verified(delta: CallCounts, requests_ok: int, concurrency: int, runs: int) -> bool:
    """The server saw no failure, at least every call h2load saw succeed, and cancellations
    only of the calls in flight when each of h2load's `runs` ended (at most `concurrency` each)."""
    return delta.failed == 0 and delta.ok >= requests_ok and delta.cancelled <= concurrency * runs
