"""The Prometheus rules, the Grafana dashboard and the prometheus-adapter rule name only
metrics, labels and label values that the real service exports (scraped from a running server)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
import yaml

from tests.deploy.manifests import ROOT, one, render, serving_kustomizations
from tests.deploy.models import DEFAULT_MODEL, model_repository
from tests.deploy.promql import Matcher, Selector, grafana_selectors, selectors
from tests.deploy.server import running_server
from tests.service.modelrepo import write_version

MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "cvae-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ADAPTER = MONITORING / "prometheus-adapter-values.yaml"

# Labels Prometheus attaches to every scraped series (ServiceMonitor target labels), and the
# series it makes itself.
_TARGET_LABELS = {"namespace", "pod", "service", "endpoint", "container", "job", "instance"}
_PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_GRPC_CODES = {code.name for code in grpc.StatusCode}
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

Exported = dict[str, list[dict[str, str]]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """The live /metrics of `cvae serve` after a good call, a refused call and a refused reload,
    and of `cvae serve --workers 2` after a good call."""
    scratch = tmp_path_factory.mktemp("metrics")
    repository = scratch / "repository"
    shutil.copytree(model_repository(scratch / "models"), repository)
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_MODEL_REPOSITORY": str(repository),
        "CVAE_MODEL_NAME": DEFAULT_MODEL,
        "CVAE_CPUS": "1",
        "CVAE_RELOAD_INTERVAL_S": "0.5",
    }
    command = [sys.executable, "-m", "cvae", "serve"]
    with running_server(command, environ, scratch / "server.log", cwd=ROOT) as server:
        server.generate([0, 1, 2], seed=1)
        with pytest.raises(grpc.RpcError) as refused:
            server.generate([10_000])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A newer version that does not check out: the reloader refuses it, and counts it.
        name = DEFAULT_MODEL
        newest = max(int(v.name) for v in (repository / name).iterdir() if v.name.isdigit())
        write_version(repository, str(newest + 1), name=name, breakage="sha_mismatch")
        deadline = time.monotonic() + 30
        while True:
            samples = server.scrape()
            # Both reload outcomes are exported at 0 from the start: wait for the refusal itself.
            if "cvae_model_refused_info" in samples or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    # With --workers the supervisor adds each worker's process figures (the CPU and memory
    # panels read both): the dashboard may name what either kind of server exports.
    clean = scratch / "clean-repository"
    shutil.copytree(model_repository(scratch / "models"), clean)
    workers = {**environ, "CVAE_MODEL_REPOSITORY": str(clean), "CVAE_WORKERS": "2"}
    with running_server(command, workers, scratch / "workers.log", cwd=ROOT) as server:
        server.generate([0, 1, 2], seed=1)
        for name, label_sets in server.scrape().items():
            samples.setdefault(name, []).extend(label_sets)
    yield samples


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _rule_selectors() -> list[Selector]:
    return [s for rule in _rules() for s in selectors(rule["expr"])]


def _panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows
    return panels


def _dashboard_selectors() -> list[Selector]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            expressions.append(variable["query"]["query"])
    return [s for e in expressions for s in grafana_selectors(e)]


def _adapter_rules() -> list[dict]:
    return yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]


def _adapter_selectors() -> list[Selector]:
    return [s for rule in _adapter_rules() for s in selectors(rule["seriesQuery"])]


# ---- the files themselves


def test_rules_are_well_formed() -> None:
    document = yaml.safe_load(RULES.read_text())
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    alerts = [rule for rule in _rules() if "alert" in rule]
    for rule in _rules():
        assert ("record" in rule) != ("alert" in rule), rule
        assert selectors(rule["expr"]), rule  # parses, and reads some series
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
    for alert in alerts:
        assert _DURATION.match(alert.get("for", "0s")), alert["alert"]
        assert alert["labels"]["severity"] in {"page", "ticket"}
        assert alert["annotations"]["summary"]
    assert {a["alert"] for a in alerts} >= {
        "CvaeHighErrorRate",
        "CvaeHighLatencyP99",
        "CvaeSaturated",
        "CvaeClientsRefused",
    }


def test_recording_rules_are_defined_before_use() -> None:
    recorded: set[str] = set()
    for rule in _rules():
        for selector in selectors(rule["expr"]):
            if ":" in selector.metric:
                assert selector.metric in recorded, f"{selector.metric} is used before recorded"
        if "record" in rule:
            recorded.add(rule["record"])


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels(dashboard)
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert grafana_selectors(target["expr"]), panel["title"]
            used = set(re.findall(r"\$\{?(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"


def test_the_autoscaler_metric_is_the_one_the_adapter_serves() -> None:
    served = {rule["name"]["as"] for rule in _adapter_rules()}
    for kustomization in serving_kustomizations():
        hpa = one(render(kustomization), "HorizontalPodAutoscaler")
        custom = {
            m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
        }
        assert custom and custom <= served, kustomization
    for rule in _adapter_rules():
        matchers = {m.label for s in selectors(rule["seriesQuery"]) for m in s.matchers}
        assert set(rule["resources"]["overrides"]) <= matchers | _TARGET_LABELS


# ---- against the live service


def _recording_sources(record: str) -> list[Selector]:
    """The series a recorded metric is computed from, down to exported metrics."""
    (rule,) = [rule for rule in _rules() if rule.get("record") == record]
    sources: list[Selector] = []
    for selector in selectors(rule["expr"]):
        is_recorded = ":" in selector.metric
        sources.extend(_recording_sources(selector.metric) if is_recorded else [selector])
    return sources


def _check_selector(selector: Selector, exported: Exported, where: str) -> None:
    if selector.metric in _PROMETHEUS_SERIES:
        return
    if ":" in selector.metric:
        assert selector.metric in _recorded(), f"{where}: {selector.metric} is never recorded"
        # A recorded series carries its sources' labels: check the matchers against those.
        for matcher in selector.matchers:
            label_sets = [
                labels
                for source in _recording_sources(selector.metric)
                for labels in exported.get(source.metric, [])
                if matcher.label in labels
            ]
            if matcher.label in _TARGET_LABELS:
                continue
            assert label_sets, f"{where}: the sources of {selector.metric} lack {matcher.label}"
            _check_value(matcher, label_sets, f"{where}: {selector.metric}")
        return
    assert selector.metric in exported, f"{where}: the service exports no {selector.metric}"
    label_sets = exported[selector.metric]
    known = set().union(*label_sets) | _TARGET_LABELS
    for matcher in selector.matchers:
        assert matcher.label in known, f"{where}: {selector.metric} has no label {matcher.label}"
        if matcher.label not in _TARGET_LABELS:
            _check_value(matcher, label_sets, f"{where}: {selector.metric}")


def _check_value(matcher: Matcher, label_sets: list[dict[str, str]], where: str) -> None:
    """gRPC codes must be code names; other equality matchers a value the service has used."""
    if matcher.label == "code":
        values = set(matcher.value.split("|"))
        assert values <= _GRPC_CODES, f"{where}: not gRPC codes: {values - _GRPC_CODES}"
    elif matcher.operator == "=":
        seen = {labels.get(matcher.label) for labels in label_sets}
        assert matcher.value in seen, f"{where}: {matcher} never seen; the service has {seen}"


def test_every_metric_the_rules_name_is_exported(exported: Exported) -> None:
    for selector in _rule_selectors():
        _check_selector(selector, exported, RULES.name)


def test_every_metric_the_dashboard_names_is_exported(exported: Exported) -> None:
    for selector in _dashboard_selectors():
        _check_selector(selector, exported, DASHBOARD.name)


def test_the_adapter_reads_an_exported_metric(exported: Exported) -> None:
    for selector in _adapter_selectors():
        _check_selector(selector, exported, ADAPTER.name)


def test_the_scrape_is_real(exported: Exported) -> None:
    """The fixture saw the calls it made: the check above is not against an empty page."""
    codes = {labels["code"] for labels in exported["cvae_requests_total"]}
    assert {"OK", "INVALID_ARGUMENT"} <= codes
    outcomes = {labels["outcome"] for labels in exported["cvae_model_reloads_total"]}
    assert "refused" in outcomes


# ---- refusal reasons: each is saturation or a client's doing, and the HPA counts saturation


def _reasons_matched(expression: str) -> set[str]:
    """The refusal reasons (service/errors.py) that the cvae_refusals_total selectors of
    `expression` keep."""
    from service.errors import REFUSAL_REASONS

    kept: set[str] = set()
    for selector in selectors(expression):
        if selector.metric not in {"cvae_refusals_total", "cvae:refusals:rate5m"}:
            continue
        matchers = [m for m in selector.matchers if m.label == "reason"]
        assert matchers, f"{selector.metric} without a reason matcher in {expression!r}"
        kept |= {reason for reason in REFUSAL_REASONS if all(_keeps(m, reason) for m in matchers)}
    return kept


def _keeps(matcher: Matcher, value: str) -> bool:
    if matcher.operator == "=":
        return value == matcher.value
    if matcher.operator == "!=":
        return value != matcher.value
    matched = re.fullmatch(matcher.value, value) is not None
    return matched if matcher.operator == "=~" else not matched


def _alert(name: str) -> dict:
    (rule,) = [rule for rule in _rules() if rule.get("alert") == name]
    return rule


def test_every_refusal_reason_is_saturation_or_a_clients_doing_and_only_one() -> None:
    from service.errors import REFUSAL_REASONS

    saturation = _reasons_matched(_alert("CvaeSaturated")["expr"])
    clients = _reasons_matched(_alert("CvaeClientsRefused")["expr"])
    assert not saturation & clients, saturation & clients
    assert saturation | clients == set(REFUSAL_REASONS), set(REFUSAL_REASONS) - saturation - clients
    assert {"queue_full", "concurrency_limit"} <= saturation


def test_the_autoscalers_refusal_metric_counts_the_saturation_reasons_alone() -> None:
    """concurrency_limit refusals happen before the handler runs, so cvae_requests_total never
    counts them: a rule on RESOURCE_EXHAUSTED calls missed the main overload mode, and counted
    clients' too-short deadlines and unread streams, which scaling does not help."""
    (rule,) = [
        rule
        for rule in yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]
        if rule["name"]["as"] == "cvae_refusals_per_second"
    ]
    query = rule["metricsQuery"].replace("<<.LabelMatchers>>", 'namespace="n"')
    query = query.replace("<<.GroupBy>>", "pod")
    assert _reasons_matched(query) == _reasons_matched(_alert("CvaeSaturated")["expr"])
    assert "cvae_requests_total" not in query
