"""The NetworkPolicies of each overlay, asked who may reach whom (tests/deploy/netpol.py)."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.manifests import K8S_DIR, container, objects, one, pod_labels, render
from tests.deploy.netpol import Pod, allowed

_OVERLAYS = ("overlays/dev", "overlays/prod")
_CLIENT_LABEL = {"cvae-mnist-service/client": "true"}
_DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, ports={"dns": 53})


def _namespace(overlay: str) -> str:
    return str(yaml.safe_load((K8S_DIR / overlay / "kustomization.yaml").read_text())["namespace"])


def _policies(overlay: str) -> list[dict]:
    return objects(render(overlay), "NetworkPolicy")


def _ports(workload: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(workload).get("ports", [])}


def _server(overlay: str) -> Pod:
    deployment = one(render(overlay), "Deployment")
    return Pod(_namespace(overlay), pod_labels(deployment), ports=_ports(deployment))


def _job_pod(overlay: str) -> Pod:
    """A shard pod of jobs/generate, applied in the overlay's namespace as documented."""
    return Pod(_namespace(overlay), pod_labels(one(render("jobs/generate"), "Job")))


@pytest.fixture(params=_OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_policy_is_in_the_overlay_namespace(overlay: str) -> None:
    policies = _policies(overlay)
    assert policies
    assert {p["metadata"]["namespace"] for p in policies} == {_namespace(overlay)}


def test_everything_in_the_namespace_is_denied_by_default(overlay: str) -> None:
    (deny,) = [p for p in _policies(overlay) if not p["spec"]["podSelector"]]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")
    stranger = Pod(_namespace(overlay), {"app": "something-else"}, ports={"http": 8080})
    neighbour = Pod(_namespace(overlay), {"app": "neighbour"})
    assert not allowed(_policies(overlay), neighbour, stranger, 8080)


def test_grpc_only_from_labelled_client_namespaces(overlay: str) -> None:
    policies, server = _policies(overlay), _server(overlay)
    grpc, metrics = server.ports["grpc"], server.ports["metrics"]
    client = Pod("team-a", {"app": "client"}, namespace_labels=_CLIENT_LABEL)
    assert allowed(policies, client, server, grpc)
    assert not allowed(policies, client, server, metrics), "clients must not read /metrics"
    unlabelled = Pod("team-b", {"app": "client"})
    assert not allowed(policies, unlabelled, server, grpc)
    # A pod that copies the server's labels in another namespace gains nothing.
    impostor = Pod("team-b", dict(server.labels))
    assert not allowed(policies, impostor, server, grpc)


def test_metrics_only_from_the_monitoring_namespace(overlay: str) -> None:
    policies, server = _policies(overlay), _server(overlay)
    prometheus = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    assert allowed(policies, prometheus, server, server.ports["metrics"])
    assert not allowed(policies, prometheus, server, server.ports["grpc"])
    elsewhere = Pod("observability", {"app.kubernetes.io/name": "prometheus"})
    assert not allowed(policies, elsewhere, server, server.ports["metrics"])


def test_the_dataset_job_reaches_the_server_and_dns_and_nothing_else(overlay: str) -> None:
    policies, server, shard = _policies(overlay), _server(overlay), _job_pod(overlay)
    assert allowed(policies, shard, server, server.ports["grpc"])
    assert not allowed(policies, shard, server, server.ports["metrics"])
    assert allowed(policies, shard, _DNS, 53, "UDP") and allowed(policies, shard, _DNS, 53, "TCP")
    outside = Pod("default", {"app": "web"}, ports={"http": 443})
    assert not allowed(policies, shard, outside, 443)
    fake_dns = Pod("team-a", {"k8s-app": "kube-dns"})
    assert not allowed(policies, shard, fake_dns, 53, "UDP")


def test_the_server_opens_no_connection(overlay: str) -> None:
    policies, server = _policies(overlay), _server(overlay)
    assert not allowed(policies, server, _DNS, 53, "UDP")
    assert not allowed(policies, server, Pod("default", {"app": "web"}), 443)


def test_the_evaluator_lets_everything_through_without_policies() -> None:
    """The checks above can fail for the right reason: with no policy, all is open."""
    server = _server("overlays/prod")
    stranger = Pod("team-b", {"app": "client"})
    assert allowed([], stranger, server, server.ports["metrics"])
    assert allowed([], server, _DNS, 53, "UDP")
