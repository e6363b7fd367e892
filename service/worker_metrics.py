"""The supervisor's /metrics for `cvae serve --workers N`: all workers' service metrics combined.

The workers write their metric values to files in one folder (prometheus-client's multiprocess
mode, PROMETHEUS_MULTIPROC_DIR); the supervisor reads them at each scrape: counters and
histograms are summed over workers, gauges combined by their `multiprocess_mode`
(service/metrics.py). Multiprocess mode cannot export a worker's own process_* figures, so each
live worker's are read from /proc as `cvae_worker_process_*{worker,pid}`; `process_*` are the
supervisor's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

_LOGGER = logging.getLogger(__name__)
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_WORKER_NAMESPACE = "cvae_worker"

__all__ = ["MULTIPROC_DIR_ENV", "build_supervisor_registry", "mark_process_dead", "serve"]


_VERSION_GAUGES = ("cvae_model_info", "cvae_served_model_info")


class _LoadedVersionsOnly(Collector):
    """The workers' metrics, without the version samples (cvae_model_info,
    cvae_served_model_info) of versions no worker has loaded or serves.

    A worker that unloads a version sets its sample to 0 (removing it cannot reach the file).
    """

    def __init__(self, inner: Collector) -> None:
        self._inner = inner

    def collect(self) -> Iterator[Metric]:
        for metric in self._inner.collect():
            if metric.name in _VERSION_GAUGES:
                metric.samples = [sample for sample in metric.samples if sample.value != 0]
            yield metric


class WorkerProcessCollector(Collector):
    """process_* of each live worker (CPU, resident memory, fds) as cvae_worker_process_*."""

    def __init__(self, live_workers: Callable[[], Mapping[int, int]]) -> None:
        self._live_workers = live_workers  # worker index -> pid
        self._readers: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        live = dict(self._live_workers())
        for pid in set(self._readers) - set(live.values()):
            del self._readers[pid]
        for index, pid in sorted(live.items()):
            reader = self._readers.get(pid)
            if reader is None:
                reader = self._readers[pid] = ProcessCollector(
                    namespace=_WORKER_NAMESPACE, pid=_returning(pid), registry=None
                )
            labels = {"worker": str(index), "pid": str(pid)}
            for metric in reader.collect():  # nothing when the process just exited
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, f"{metric.documentation} (per worker)", metric.type
                    )
                for sample in metric.samples:
                    family.add_sample(sample.name, {**sample.labels, **labels}, sample.value)
        yield from families.values()


def _returning(pid: int) -> Callable[[], int]:
    return lambda: pid


def build_supervisor_registry(
    folder: Path, live_workers: Callable[[], Mapping[int, int]]
) -> CollectorRegistry:
    """Workers' metrics from `folder`, their process figures, and the supervisor's own."""
    registry = CollectorRegistry()
    registry.register(_LoadedVersionsOnly(MultiProcessCollector(None, path=str(folder))))
    registry.register(WorkerProcessCollector(live_workers))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve(registry: CollectorRegistry, host: str, port: int) -> Any:
    """Start the /metrics HTTP endpoint in a background thread; returns the server."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    _LOGGER.debug("metrics of all workers on http://%s:%d/metrics", host, port)
    return server
