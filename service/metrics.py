"""Prometheus metrics of the service, built by a function on a registry of their own."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from service.errors import REFUSAL_REASONS

_LOGGER = logging.getLogger(__name__)

# Request latencies of this service span ~0.2 ms (one image) to seconds (big requests).
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0,
)  # fmt: skip
# Whole calls: a GenerateStream of millions of images runs for minutes.
_CALL_BUCKETS = (*_LATENCY_BUCKETS, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_RELOAD_OUTCOMES = ("loaded", "refused")


class ServiceMetrics:
    """The metric objects, and the calls the service makes on them."""

    def __init__(self, registry: CollectorRegistry, max_batch: int) -> None:
        self.registry = registry
        self.requests = Counter(
            "cvae_requests", "Calls answered, by protocol, method and status code",
            ["protocol", "method", "code"],
            registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "cvae_request_duration_seconds", "Time from a call's start to its answer",
            ["protocol", "method"],
            buckets=_CALL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.refusals = Counter(
            "cvae_refusals", "Calls refused with RESOURCE_EXHAUSTED, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.queue_duration = Histogram(
            "cvae_queue_duration_seconds", "Time a request piece waited for a decoder call",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.inference_duration = Histogram(
            "cvae_inference_duration_seconds", "Time of one decoder call (one batch)",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "cvae_batch_size", "Images per executed decoder call",
            buckets=_batch_buckets(max_batch), registry=registry,
        )  # fmt: skip
        self.images_generated = Counter(
            "cvae_images_generated", "Images sent to callers", registry=registry
        )
        # multiprocess_mode: how `cvae serve --workers N` (service/worker_metrics.py) combines
        # the workers' values; a single process ignores it. Queues add up; a version is loaded
        # when any live worker has it.
        self.queue_depth = Gauge(
            "cvae_queue_depth", "Images waiting for a decoder call", registry=registry,
            multiprocess_mode="livesum",
        )  # fmt: skip
        # Generator calls inside the service (health and reflection not counted), the per-pod
        # saturation signal the HPA scales on: under overload it climbs to the concurrency limit
        # while refusals at gRPC's intake, which no counter here sees, begin.
        self.requests_in_flight = Gauge(
            "cvae_requests_in_flight", "Generator calls being handled", registry=registry,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.model_info = Gauge(
            "cvae_model_info", "1 for each loaded model version", ["name", "version"],
            registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.served_model = Gauge(
            "cvae_served_model_info",
            "1 for each model's version served to calls that pin none (its newest loaded)",
            ["name", "version"], registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.model_reloads = Counter(
            "cvae_model_reloads", "Model versions loaded or refused, by outcome", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.refused_model = Gauge(
            "cvae_model_refused_info",
            "1 for each model version on disk that failed to load (tried again when its files "
            "change)",
            ["name", "version"], registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.expired_images = Counter(
            "cvae_expired_images",
            "Images dropped unrun because the caller's deadline passed",
            registry=registry,
        )
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._duration_children: dict[tuple[str, str], Any] = {}
        self._served: dict[str, str] = {}  # model name -> the version it serves
        # Known label values start at 0: a panel or alert sees 0 before the first event, not
        # "no data".
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        for outcome in _RELOAD_OUTCOMES:
            self.model_reloads.labels(outcome)

    def initialise_requests(
        self, protocol: str, methods: Iterable[str], codes: Iterable[str]
    ) -> None:
        """Create every (method, code) series of `protocol` at 0 (its servicer knows them)."""
        codes = tuple(codes)
        for method in methods:
            self._duration_children[(protocol, method)] = self.request_duration.labels(
                protocol, method
            )
            for code in codes:
                key = (protocol, method, code)
                self._request_children[key] = self.requests.labels(*key)

    # Request accounting (servicer).
    def call_started(self) -> None:
        self.requests_in_flight.inc()

    def call_finished(self) -> None:
        self.requests_in_flight.dec()

    def observe_request(self, protocol: str, method: str, code: str, seconds: float) -> None:
        """One answered call; `protocol` is "cvae.v1", "oip-grpc" or "oip-http"."""
        key = (protocol, method, code)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(*key)
        counter.inc()
        histogram = self._duration_children.get(key[:2])
        if histogram is None:
            histogram = self._duration_children[key[:2]] = self.request_duration.labels(*key[:2])
        histogram.observe(seconds)

    def count_refusal(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def count_images(self, images: int) -> None:
        self.images_generated.inc(images)

    # BatcherMetrics.
    def observe_queue_wait(self, seconds: float) -> None:
        self.queue_duration.observe(seconds)

    def observe_batch(self, images: int, seconds: float) -> None:
        self.batch_size.observe(images)
        self.inference_duration.observe(seconds)

    def set_queue_depth(self, images: int) -> None:
        self.queue_depth.set(images)

    def count_expired(self, images: int) -> None:
        self.expired_images.inc(images)

    # Model lifecycle (reloader).
    def model_loaded(self, name: str, version: str) -> None:
        self.model_info.labels(name, version).set(1)
        self.model_reloads.labels("loaded").inc()

    def model_unloaded(self, name: str, version: str) -> None:
        # 0 first: with several workers the value lives on in a file after remove().
        self.model_info.labels(name, version).set(0)
        with contextlib.suppress(KeyError):
            self.model_info.remove(name, version)

    def model_refused(self, name: str, version: str) -> None:
        """`version` of model `name` failed to load ("none": the model has no version that
        loads at start-up)."""
        self.model_reloads.labels("refused").inc()
        self.refused_model.labels(name, version).set(1)

    def refusal_cleared(self, name: str, version: str) -> None:
        """`version` loaded after all, or its folder is gone."""
        self.refused_model.labels(name, version).set(0)  # see model_unloaded
        with contextlib.suppress(KeyError):
            self.refused_model.remove(name, version)

    def model_served(self, name: str, version: str) -> None:
        """`version` now answers calls that pin none; the one before it no longer does."""
        before = self._served.get(name)
        if before == version:
            return
        if before is not None:
            self.served_model.labels(name, before).set(0)  # see model_unloaded
            with contextlib.suppress(KeyError):
                self.served_model.remove(name, before)
        self.served_model.labels(name, version).set(1)
        self._served[name] = version


def build_metrics(max_batch: int) -> ServiceMetrics:
    """Fresh metric objects with process, platform and GC collectors on their own registry."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return ServiceMetrics(registry, max_batch)


def serve_metrics(metrics: ServiceMetrics, host: str, port: int) -> Any:
    """Start the /metrics HTTP endpoint in a background thread; returns the server."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    _LOGGER.debug("metrics on http://%s:%d/metrics", host, port)
    return server


def _batch_buckets(max_batch: int) -> list[float]:
    buckets, size = [], 1
    while size < max_batch:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(max_batch))
    return buckets
