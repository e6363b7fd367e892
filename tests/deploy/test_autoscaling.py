"""The HPA scales on saturation: its metrics are served by the adapter rules from series the real
service exports, and replaying series through the HPA's algorithm (tests/deploy/hpa.py) shows
it acting where CPU alone does not."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
import yaml

from cvae.v1 import generator_pb2, generator_pb2_grpc
from tests.deploy import hpa as algorithm
from tests.deploy.manifests import ROOT, one, quantity, render, serving_kustomizations
from tests.deploy.models import model_repository
from tests.deploy.promql import Selector, selectors
from tests.deploy.server import RunningServer, running_server

_MONITORING = ROOT / "deploy" / "monitoring"
_SNIPPET = _MONITORING / "prometheus-adapter-rules.yaml"
_VALUES = _MONITORING / "prometheus-adapter-values.yaml"
# What prometheus-adapter puts into a metricsQuery for one pod of one namespace.
_TEMPLATE = {
    "<<.GroupBy>>": "namespace, pod",
    "<<.LabelMatchers>>": 'namespace="cvae-prod",pod="cvae-0"',
}


def _rules() -> list[dict]:
    return list(yaml.safe_load(_SNIPPET.read_text()))


def _prod_hpa() -> dict:
    return one(render("overlays/prod"), "HorizontalPodAutoscaler")


def _filled(rule: dict) -> str:
    (series,) = selectors(rule["seriesQuery"])
    query = rule["metricsQuery"].replace("<<.Series>>", series.metric)
    for placeholder, value in _TEMPLATE.items():
        query = query.replace(placeholder, value)
    return query


def test_the_values_file_holds_exactly_the_snippet_to_merge() -> None:
    values = yaml.safe_load(_VALUES.read_text())
    assert values["rules"]["custom"] == _rules()
    assert isinstance(yaml.safe_load(_SNIPPET.read_text()), list), "a list to append"


def test_every_pods_metric_of_every_hpa_is_served_by_one_rule() -> None:
    served = [rule["name"]["as"] for rule in _rules()]
    assert len(served) == len(set(served))
    for kustomization in serving_kustomizations():
        hpa = one(render(kustomization), "HorizontalPodAutoscaler")
        names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
        assert names == set(served), kustomization
        assert {"cvae_requests_in_flight", "cvae_queue_wait_seconds"} <= names


def test_every_metric_query_parses_and_answers_for_a_pod_without_traffic() -> None:
    """A pod that has not served a call yet must still get a value (an `or` arm, or a series
    that exists from the start), or the HPA skips scale-down for as long as it lacks one."""
    for rule in _rules():
        query = _filled(rule)
        assert selectors(query), query  # parses
        assert "<<" not in query, query


def test_the_old_signals_miss_the_small_call_overload() -> None:
    """The issue's measurement: a pod flooded by one-image calls at 1.29-1.46 of its 2 cores,
    queue depth under 512, clients refused at gRPC's intake then (so no refusal was counted),
    calls in flight pinned at the concurrency limit (then CVAE_QUEUE_SIZE 8192 / 8)."""
    hpa = _prod_hpa()
    limit = 8192 // 8
    for cores in (1.29, 1.37, 1.46):
        cpu_only = {"cpu": 100 * cores / 2}
        assert algorithm.recommend(_cpu_only(hpa), 3, cpu_only) == 3, cores
        sample = {**cpu_only, "cvae_requests_in_flight": float(limit)}
        sample |= {"cvae_queue_wait_seconds": 0.004, "cvae_refusals_per_second": 0.0}
        assert algorithm.recommend(hpa, 3, sample) > 3, cores


def _cpu_only(hpa: dict) -> dict:
    only = yaml.safe_load(yaml.safe_dump(hpa))
    only["spec"]["metrics"] = [m for m in only["spec"]["metrics"] if m["type"] == "Resource"]
    return only


# ---- a live overload of the real server, replayed


@dataclass(frozen=True)
class Scrape:
    time_s: float
    in_flight: float
    queue_wait_sum: float
    queue_wait_count: float
    refused: float
    cpu_s: float


def _value(samples: dict, name: str, code: str | None = None) -> float:
    return sum(
        value
        for labels, value in samples.get(name, [])
        if code is None or labels.get("code") == code
    )


def _refusals_selector() -> Selector:
    """The cvae_refusals_total selector of the adapter's cvae_refusals_per_second rule."""
    (rule,) = [rule for rule in _rules() if rule["name"]["as"] == "cvae_refusals_per_second"]
    query = rule["metricsQuery"]
    for placeholder, value in _TEMPLATE.items():
        query = query.replace(placeholder, value)
    (refusals,) = [s for s in selectors(query) if s.metric == "cvae_refusals_total"]
    return refusals


def _kept(selector: Selector, labels: dict[str, str]) -> bool:
    """Whether `selector`'s matchers on labels the service exports keep this series."""
    for matcher in selector.matchers:
        if matcher.label in {"namespace", "pod"}:  # the target's, not the service's
            continue
        value = labels.get(matcher.label, "")
        if matcher.operator in {"=~", "!~"}:
            matched = re.fullmatch(matcher.value, value) is not None
            if matched != (matcher.operator == "=~"):
                return False
        elif (value == matcher.value) != (matcher.operator == "="):
            return False
    return True


def _scrape(server: RunningServer) -> Scrape:
    samples = server.scrape_values()
    refusals = _refusals_selector()
    return Scrape(
        time.monotonic(),
        _value(samples, "cvae_requests_in_flight"),
        _value(samples, "cvae_queue_duration_seconds_sum"),
        _value(samples, "cvae_queue_duration_seconds_count"),
        sum(value for labels, value in samples[refusals.metric] if _kept(refusals, labels)),
        _value(samples, "process_cpu_seconds_total"),
    )


def _adapter_sample(window: list[Scrape], request_cores: float) -> dict[str, float]:
    """What the adapter rules compute over `window` (the scrapes of one rate window)."""
    first, last = window[0], window[-1]
    elapsed = last.time_s - first.time_s
    waited = last.queue_wait_count - first.queue_wait_count
    return {
        "cpu": 100 * (last.cpu_s - first.cpu_s) / elapsed / request_cores,
        "cvae_requests_in_flight": sum(s.in_flight for s in window) / len(window),
        "cvae_queue_wait_seconds": (last.queue_wait_sum - first.queue_wait_sum) / max(waited, 1e-9),
        "cvae_refusals_per_second": (last.refused - first.refused) / elapsed,
    }


async def _flood(target: str, stop: threading.Event, concurrency: int, channels: int) -> None:
    """One-image Generate calls, `concurrency` outstanding at all times, over several
    connections; refusals are retried at once, like an impatient client fleet."""
    opened = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    stubs = [generator_pb2_grpc.GeneratorStub(channel) for channel in opened]
    request = generator_pb2.GenerateRequest(labels=[7], omit_latents=True)

    async def caller(index: int) -> None:
        stub = stubs[index % channels]
        while not stop.is_set():
            try:
                await stub.Generate(request, timeout=30)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
    finally:
        for channel in opened:
            await channel.close()


@pytest.fixture(scope="module")
def overload(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[Scrape], list[Scrape]]]:
    """Scrapes of a real `cvae serve` with the prod ConfigMap: idle, then flooded."""
    scratch = tmp_path_factory.mktemp("overload")
    environ = dict(one(render("overlays/prod"), "ConfigMap")["data"])
    environ |= {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_MODEL_REPOSITORY": str(model_repository(scratch / "models")),
        "CVAE_CPUS": "1",
        "CVAE_LOG_FORMAT": "text",
        "CVAE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "cvae", "serve"]
    with running_server(command, environ, scratch / "server.log", cwd=ROOT) as server:
        idle = []
        for _ in range(4):
            idle.append(_scrape(server))
            time.sleep(0.25)
        stop = threading.Event()
        flood = threading.Thread(
            target=asyncio.run, args=(_flood(server.target, stop, concurrency=600, channels=8),)
        )
        flood.start()
        try:
            time.sleep(2.0)  # the flood fills the server
            loaded = []
            for _ in range(12):
                loaded.append(_scrape(server))
                time.sleep(0.25)
        finally:
            stop.set()
            flood.join(timeout=60)
        yield idle, loaded


def test_a_pod_without_traffic_reports_every_autoscaling_series(
    overload: tuple[list[Scrape], list[Scrape]],
) -> None:
    idle, _ = overload
    sample = _adapter_sample(idle, request_cores=2)
    assert sample["cvae_requests_in_flight"] == 0
    assert sample["cvae_queue_wait_seconds"] == 0
    assert sample["cvae_refusals_per_second"] == 0
    assert algorithm.recommend(_prod_hpa(), 3, sample) < 3, "an idle pod lets the HPA scale down"


def test_the_replayed_overload_scales_up_then_back_down(
    overload: tuple[list[Scrape], list[Scrape]],
) -> None:
    idle, loaded = overload
    hpa = _prod_hpa()
    flooded = _adapter_sample(loaded, request_cores=2)
    calm = _adapter_sample(idle, request_cores=2)
    target = algorithm.targets(hpa)["cvae_requests_in_flight"]
    assert flooded["cvae_requests_in_flight"] > target * (1 + algorithm.TOLERANCE), flooded
    autoscaler = algorithm.Autoscaler(hpa, replicas=hpa["spec"]["minReplicas"])
    # Every pod as flooded as the measured one for 2 minutes (the load grows with the fleet's
    # retries, so the per-pod sample is held), then the load stops.
    grown = [autoscaler.sync(flooded) for _ in range(8)]
    assert grown[0] > hpa["spec"]["minReplicas"], flooded
    assert grown[-1] == hpa["spec"]["maxReplicas"], grown
    shrunk = [autoscaler.sync(calm) for _ in range(80)]
    assert shrunk[-1] == hpa["spec"]["minReplicas"], shrunk
    # Not at once: the scale-down window keeps the replicas for 5 minutes (20 syncs).
    window = int(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"])
    assert shrunk[: window // int(algorithm.SYNC_PERIOD_S) - 1] == [grown[-1]] * (
        window // int(algorithm.SYNC_PERIOD_S) - 1
    )


def test_a_missing_metric_blocks_scale_down() -> None:
    """Why every rule must answer for every pod: Kubernetes keeps the count while one is absent."""
    hpa = _prod_hpa()
    calm = {name: 0.0 for name in algorithm.targets(hpa)}
    assert algorithm.recommend(hpa, 10, calm) < 10
    assert algorithm.recommend(hpa, 10, calm | {"cvae_refusals_per_second": None}) == 10


def test_the_formula_scales_by_the_ratio_and_respects_the_tolerance() -> None:
    hpa = _prod_hpa()
    target = algorithm.targets(hpa)["cvae_requests_in_flight"]
    base = {name: 0.0 for name in algorithm.targets(hpa)} | {"cpu": 70.0}
    assert algorithm.recommend(hpa, 4, base | {"cvae_requests_in_flight": target * 1.05}) == 4
    assert algorithm.recommend(hpa, 4, base | {"cvae_requests_in_flight": target * 2.5}) == 10
    assert quantity("50m") == pytest.approx(0.05)
