"""Kubernetes NetworkPolicy semantics, to ask what a set of rendered policies lets through.

Follows the API's documented rules (networking.k8s.io/v1): a pod is isolated in a direction
once any policy in its namespace selects it with that policy type; a connection then needs one
allowing rule on each side (the source's egress, the destination's ingress). A rule allows a
peer when one of its `from`/`to` entries matches (podSelector alone: pods of the policy's
namespace; namespaceSelector alone: every pod of the matching namespaces; both: pods matching
both) and a port when one of its `ports` matches (none listed: every port; a named port is the
destination container's port of that name). ipBlock peers never match a pod here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.deploy.manifests import selector_matches

Obj = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # container port name -> number

    def all_namespace_labels(self) -> dict[str, str]:
        # The API server sets this label on every namespace (Kubernetes 1.22+).
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def _matches_all(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector; the empty selector {} matches everything here (unlike manifests'
    selector_matches, which refuses an empty one as a likely mistake)."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    return selector_matches(selector, labels)


def _types(policy: Obj) -> set[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def _selects(policy: Obj, pod: Pod) -> bool:
    return policy["metadata"]["namespace"] == pod.namespace and _matches_all(
        policy["spec"]["podSelector"], pod.labels
    )


def _peer_matches(peer: Obj, policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        return False
    namespace_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector")
    if namespace_selector is None:
        in_namespace = other.namespace == policy_namespace
    else:
        in_namespace = _matches_all(namespace_selector, other.all_namespace_labels())
    return in_namespace and (pod_selector is None or _matches_all(pod_selector, other.labels))


def _port_matches(rule_ports: list[Obj] | None, destination: Pod, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if destination.ports.get(wanted) == port:
                return True
        elif wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def _allowed_side(
    policies: list[Obj], pod: Pod, other: Pod, destination: Pod, port: int, protocol: str, way: str
) -> bool:
    """Whether `pod`'s side (its egress when way == "Egress", ingress otherwise) lets it through."""
    selecting = [p for p in policies if _selects(p, pod) and way in _types(p)]
    if not selecting:
        return True
    rules_key, peers_key = ("egress", "to") if way == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), destination, port, protocol):
                return True
    return False


def allowed(
    policies: list[Obj], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` may open a connection to `destination`:`port` under `policies`."""
    egress = _allowed_side(policies, source, destination, destination, port, protocol, "Egress")
    ingress = _allowed_side(policies, destination, source, destination, port, protocol, "Ingress")
    return egress and ingress
