"""What kube-prometheus-stack needs: the release label on the ServiceMonitor and PrometheusRule
(a component's knob), the rule files shipped as that PrometheusRule, and platform alerts whose
series and label values match what kube-state-metrics reports for the rendered objects."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType

import pytest
import yaml

from tests.deploy.manifests import (
    K8S_DIR,
    ROOT,
    container,
    one,
    render,
    selector_matches,
    serving_kustomizations,
)
from tests.deploy.promql import selectors

_MONITORING = ROOT / "deploy" / "monitoring"
_PLATFORM = _MONITORING / "cvae-platform-rules.yaml"
_COMPONENT = K8S_DIR / "components" / "kube-prometheus-stack" / "kustomization.yaml"
_OVERLAYS = [k for k in serving_kustomizations() if k.startswith("overlays/")]

# kube-state-metrics series the platform alerts read, with their labels (kube-state-metrics
# docs, docs/metrics/workload/*.md), and Prometheus's own `up` with the ServiceMonitor's target
# labels.
_HPA = {"namespace", "horizontalpodautoscaler"}
_SERIES_LABELS = {
    "kube_pod_container_status_restarts_total": {"namespace", "pod", "container", "uid"},
    "kube_pod_container_status_last_terminated_reason": {"namespace", "pod", "container", "reason"},
    "kube_horizontalpodautoscaler_status_current_replicas": _HPA,
    "kube_horizontalpodautoscaler_spec_max_replicas": _HPA,
    "kube_horizontalpodautoscaler_status_condition": _HPA | {"condition", "status"},
    "kube_deployment_status_replicas_available": {"namespace", "deployment"},
    "up": {"job", "instance", "namespace", "pod", "service", "endpoint", "container"},
}  # fmt: skip


def _prometheusrule_tool() -> ModuleType:
    path = _MONITORING / "prometheusrule.py"
    spec = importlib.util.spec_from_file_location("prometheusrule", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _release_label() -> dict[str, str]:
    (entry,) = yaml.safe_load(_COMPONENT.read_text())["labels"]
    return dict(entry["pairs"])


def _platform_alerts() -> list[dict]:
    return [r for g in yaml.safe_load(_PLATFORM.read_text())["groups"] for r in g["rules"]]


def test_the_prometheus_rule_is_the_rule_files() -> None:
    tool = _prometheusrule_tool()
    assert tool.main(["--check"]) == 0, "deploy/k8s/base/prometheusrule.yaml is stale"
    shipped = one(render("base"), "PrometheusRule")
    built = tool.build()
    assert shipped["spec"] == built["spec"]
    names = [group["name"] for group in shipped["spec"]["groups"]]
    assert len(names) == len(set(names))
    for path in tool.RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            assert group in shipped["spec"]["groups"], group["name"]


@pytest.mark.parametrize("overlay", _OVERLAYS)
def test_kube_prometheus_stack_selects_the_monitor_and_the_rules(overlay: str) -> None:
    """Its Prometheus: serviceMonitorSelector and ruleSelector {matchLabels: {release: NAME}}."""
    selector = {"matchLabels": _release_label()}
    rendered = render(overlay)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert selector_matches(selector, one(rendered, kind)["metadata"]["labels"]), kind
    # Only the selected kinds get the label: the pods and Services do not change.
    assert "release" not in one(rendered, "Deployment")["metadata"]["labels"]


def test_without_the_component_nothing_would_be_selected() -> None:
    selector = {"matchLabels": _release_label()}
    monitor = one(render("base"), "ServiceMonitor")
    assert not selector_matches(selector, monitor["metadata"]["labels"])


def test_platform_alerts_cover_restarts_oom_hpa_and_scrape_targets() -> None:
    alerts = {rule["alert"]: rule for rule in _platform_alerts()}
    assert {
        "CvaePodRestarting",
        "CvaeOOMKilled",
        "CvaeAutoscalerAtMax",
        "CvaeAutoscalerMetricsMissing",
        "CvaeScrapeTargetMissing",
    } <= set(alerts)
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"page", "ticket"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name


def _expected_values() -> dict[str, str]:
    base = render("base")
    deployment = one(base, "Deployment")
    monitor = one(base, "ServiceMonitor")
    (service,) = [
        s
        for s in base
        if s["kind"] == "Service"
        and selector_matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    return {
        "container": container(deployment)["name"],
        "deployment": deployment["metadata"]["name"],
        "horizontalpodautoscaler": one(base, "HorizontalPodAutoscaler")["metadata"]["name"],
        # The ServiceMonitor's jobLabel names the Service label whose value becomes `job`.
        "job": service["metadata"]["labels"][monitor["spec"]["jobLabel"]],
    }


def test_platform_alerts_read_known_series_with_the_rendered_names() -> None:
    expected = _expected_values()
    for rule in _platform_alerts():
        for selector in selectors(rule["expr"]):
            known = _SERIES_LABELS.get(selector.metric)
            assert known is not None, f"{rule['alert']}: unknown series {selector.metric}"
            for matcher in selector.matchers:
                assert matcher.label in known, f"{rule['alert']}: {selector.metric}.{matcher.label}"
                if matcher.label in expected:
                    assert matcher.operator == "=", rule["alert"]
                    assert matcher.value == expected[matcher.label], rule["alert"]


def test_the_pod_pattern_matches_server_pods_only() -> None:
    patterns = {
        m.value
        for rule in _platform_alerts()
        for s in selectors(rule["expr"])
        for m in s.matchers
        if m.label == "pod"
    }
    assert patterns
    for pattern in patterns:
        anchored = re.compile(f"^(?:{pattern})$")  # PromQL regexes are fully anchored
        assert anchored.match("cvae-7d9f8b6c4-x2k9p"), pattern  # Deployment-ReplicaSet-pod
        assert not anchored.match("cvae-generate-0-abcde"), pattern  # an Indexed Job pod
        assert not anchored.match("cvae-7d9f8b6c4"), pattern
