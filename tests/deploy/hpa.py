"""The HorizontalPodAutoscaler's decision (autoscaling/v2), replayed on metric series.

What kube-controller-manager does each sync (pkg/controller/podautoscaler, documented at
kubernetes.io "Horizontal Pod Autoscaling", "Algorithm details" and "Configurable scaling
behavior"), for pods that are all ready and all report:
- per metric, ratio = current / target (Resource Utilization: usage over requests, in percent;
  Pods AverageValue: the mean over the pods); within the tolerance (0.1) of 1 the metric asks
  for the current count, otherwise for ceil(ratio x current);
- the recommendation is the largest over the metrics; when a metric is missing and the others
  ask for fewer pods, nothing scales down;
- behavior: a scale-up is capped by the policies (Pods: +value; Percent: x (1 + value/100),
  rounded up; selectPolicy Max takes the largest cap) relative to the count periodSeconds ago; a
  scale-down takes the highest recommendation of the stabilization window, and is capped the
  same way (selectPolicy Min takes the smallest change);
- the result is held within minReplicas and maxReplicas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.manifests import quantity

TOLERANCE = 0.1
SYNC_PERIOD_S = 15.0

# One sync's view: metric name ("cpu" for the Resource metric) -> the value per pod, or None
# when the metrics API does not serve it. CPU is utilization in percent of the request.
Sample = Mapping[str, float | None]


def _target(metric: dict[str, Any]) -> tuple[str, float]:
    if metric["type"] == "Resource":
        target = metric["resource"]["target"]
        assert target["type"] == "Utilization", target
        return metric["resource"]["name"], float(target["averageUtilization"])
    assert metric["type"] == "Pods", metric["type"]
    target = metric["pods"]["target"]
    assert target["type"] == "AverageValue", target
    return metric["pods"]["metric"]["name"], quantity(target["averageValue"])


def targets(hpa: dict[str, Any]) -> dict[str, float]:
    return dict(_target(metric) for metric in hpa["spec"]["metrics"])


def recommend(hpa: dict[str, Any], current: int, sample: Sample) -> int:
    """The replica count the metrics alone ask for (before behavior and bounds)."""
    wanted: list[int] = []
    missing = False
    for name, target in targets(hpa).items():
        value = sample.get(name)
        if value is None:
            missing = True
            continue
        ratio = value / target
        wanted.append(current if abs(ratio - 1.0) <= TOLERANCE else math.ceil(ratio * current))
    if not wanted:
        return current
    desired = max(wanted)
    if missing and desired < current:
        return current
    return desired


def _limit(policies: Sequence[dict[str, Any]], select: str, base: int, up: bool) -> int:
    limits = []
    for policy in policies:
        value = int(policy["value"])
        if policy["type"] == "Pods":
            limits.append(base + value if up else base - value)
        elif up:
            limits.append(math.ceil(base * (1 + value / 100)))
        else:
            limits.append(math.floor(base * (1 - value / 100)))
    if select == "Disabled":
        return base
    if up:
        return max(limits) if select == "Max" else min(limits)
    return min(limits) if select == "Max" else max(limits)


@dataclass
class Autoscaler:
    """One HPA's state across syncs: replicas and the recent recommendations."""

    hpa: dict[str, Any]
    replicas: int
    time_s: float = 0.0
    history: list[tuple[float, int]] = field(default_factory=list)  # (time, recommendation)
    counts: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas)

    def sync(self, sample: Sample) -> int:
        spec = self.hpa["spec"]
        behavior = spec.get("behavior", {})
        self.counts.append((self.time_s, self.replicas))
        recommendation = recommend(self.hpa, self.replicas, sample)
        self.history.append((self.time_s, recommendation))
        desired = self._stabilized(recommendation, behavior)
        desired = self._rate_limited(desired, behavior)
        self.replicas = max(spec.get("minReplicas", 1), min(spec["maxReplicas"], desired))
        self.time_s += SYNC_PERIOD_S
        return self.replicas

    def _window(self, rules: dict[str, Any], default: float) -> list[int]:
        window = float(rules.get("stabilizationWindowSeconds", default))
        return [r for t, r in self.history if t >= self.time_s - window]

    def _stabilized(self, recommendation: int, behavior: dict[str, Any]) -> int:
        up = behavior.get("scaleUp", {})
        down = behavior.get("scaleDown", {})
        if recommendation > self.replicas:
            return min(self._window(up, 0.0))
        if recommendation < self.replicas:
            return max(self._window(down, 300.0))
        return recommendation

    def _replicas_ago(self, seconds: float) -> int:
        past = [r for t, r in self.counts if t > self.time_s - seconds]
        return past[0] if past else self.replicas

    def _rate_limited(self, desired: int, behavior: dict[str, Any]) -> int:
        if desired > self.replicas:
            rules = behavior.get("scaleUp", {})
            policies = rules.get("policies", [])
            if not policies:
                return desired
            period = max(int(p["periodSeconds"]) for p in policies)
            base = self._replicas_ago(period)
            return min(desired, _limit(policies, rules.get("selectPolicy", "Max"), base, True))
        if desired < self.replicas:
            rules = behavior.get("scaleDown", {})
            policies = rules.get("policies", [])
            if not policies:
                return desired
            period = max(int(p["periodSeconds"]) for p in policies)
            base = self._replicas_ago(period)
            return max(desired, _limit(policies, rules.get("selectPolicy", "Max"), base, False))
        return desired
