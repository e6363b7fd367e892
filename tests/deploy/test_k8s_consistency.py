"""The rendered objects agree with each other: ports, probes, labels, selectors, settings."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.manifests import (
    K8S_DIR,
    KUSTOMIZATIONS,
    container,
    container_port,
    cpu_budget,
    objects,
    one,
    pod_labels,
    pod_spec,
    quantity,
    render,
    selector_matches,
    service_selects,
    serving_kustomizations,
)

SERVING = serving_kustomizations()
_HEALTH_SERVICE = "cvae.v1.Generator"


def test_base_and_both_overlays_deploy_the_server() -> None:
    assert {"base", "overlays/dev", "overlays/prod"} <= set(SERVING)


@pytest.fixture(params=SERVING)
def rendered(request: pytest.FixtureRequest) -> tuple[dict, ...]:
    return render(request.param)


def _resolve_target_port(workload: dict, target_port: int | str) -> int:
    if isinstance(target_port, int):
        return target_port
    return container_port(workload, target_port)


def test_deployment_selector_matches_its_pods(rendered: tuple[dict, ...]) -> None:
    deployment = one(rendered, "Deployment")
    assert selector_matches(deployment["spec"]["selector"], pod_labels(deployment))
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the count"


def test_both_services_select_the_server_pods_on_its_grpc_port(rendered: tuple[dict, ...]) -> None:
    deployment = one(rendered, "Deployment")
    services = objects(rendered, "Service")
    kinds = sorted(s["spec"].get("clusterIP") == "None" for s in services)
    assert kinds == [False, True], "a ClusterIP Service and a headless one"
    grpc_port = container_port(deployment, "grpc")
    for service in services:
        assert service_selects(service, pod_labels(deployment)), service["metadata"]["name"]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert _resolve_target_port(deployment, ports["grpc"]["targetPort"]) == grpc_port
        for port in ports.values():  # every named target port exists in the container
            _resolve_target_port(deployment, port["targetPort"])


def test_probes_are_native_grpc_health_checks_on_the_grpc_port(rendered: tuple[dict, ...]) -> None:
    """On the gRPC port; with TLS on it, on the plaintext health-only port (CVAE_HEALTH_PORT),
    since kubelet gRPC probes cannot speak TLS."""
    deployment = one(rendered, "Deployment")
    server = container(deployment)
    (source,) = server["envFrom"]
    config = one(rendered, "ConfigMap", source["configMapRef"]["name"])["data"]
    if "CVAE_TLS_CERT" in config:
        grpc_port = container_port(deployment, "health")
        assert int(config["CVAE_HEALTH_PORT"]) == grpc_port
    else:
        grpc_port = container_port(deployment, "grpc")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = server[probe_name]
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe_name
        assert probe["grpc"]["port"] == grpc_port, probe_name
    # Ready only once a model is loaded (and not while draining); alive as long as the process is.
    assert server["startupProbe"]["grpc"]["service"] == _HEALTH_SERVICE
    assert server["readinessProbe"]["grpc"]["service"] == _HEALTH_SERVICE
    assert server["livenessProbe"]["grpc"].get("service", "") == ""


def test_config_map_ports_are_the_container_ports(rendered: tuple[dict, ...]) -> None:
    deployment = one(rendered, "Deployment")
    server = container(deployment)
    (source,) = server["envFrom"]
    config = one(rendered, "ConfigMap", source["configMapRef"]["name"])
    assert int(config["data"]["CVAE_PORT"]) == container_port(deployment, "grpc")
    assert int(config["data"]["CVAE_METRICS_PORT"]) == container_port(deployment, "metrics")


def test_the_cpu_budget_follows_the_cpu_request(rendered: tuple[dict, ...]) -> None:
    """requests.cpu, which every container sets: with limits.cpu and no CPU limit the kubelet
    hands the node's CPU count to the pod, and threads per decoder slot grow with the node."""
    deployment = one(rendered, "Deployment")
    server = container(deployment)
    env = {e["name"]: e for e in server["env"]}
    field = env["CVAE_CPUS"]["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "requests.cpu"
    assert field["containerName"] == server["name"]
    assert quantity(field.get("divisor", "1")) == 1
    assert cpu_budget(deployment) >= 1
    # An operator who drops the CPU limit (to avoid CFS throttling) keeps the same threads.
    unlimited = json.loads(json.dumps(deployment))
    del container(unlimited)["resources"]["limits"]["cpu"]
    assert cpu_budget(unlimited) == cpu_budget(deployment)
    # Nothing else sets it: an envFrom value would be overridden silently, so refuse one.
    (source,) = server["envFrom"]
    config = one(rendered, "ConfigMap", source["configMapRef"]["name"])
    assert "CVAE_CPUS" not in config["data"]


def test_requests_and_limits_are_set_and_ordered(rendered: tuple[dict, ...]) -> None:
    resources = container(one(rendered, "Deployment"))["resources"]
    for resource in ("cpu", "memory"):
        assert quantity(resources["requests"][resource]) <= quantity(
            resources["limits"][resource]
        ), resource


def test_termination_grace_covers_the_pre_stop_sleep_and_the_drain(
    rendered: tuple[dict, ...],
) -> None:
    deployment = one(rendered, "Deployment")
    server = container(deployment)
    pre_stop = server["lifecycle"]["preStop"]
    assert set(pre_stop) == {"sleep"}, "the native sleep action: the image has no sleep binary"
    (source,) = server["envFrom"]
    config = one(rendered, "ConfigMap", source["configMapRef"]["name"])
    drain = float(config["data"]["CVAE_GRACE_PERIOD_S"])
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > pre_stop["sleep"]["seconds"] + drain


def test_pods_are_locked_down(rendered: tuple[dict, ...]) -> None:
    deployment = one(rendered, "Deployment")
    pod = pod_spec(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    service_account = pod["serviceAccountName"]
    assert one(rendered, "ServiceAccount", service_account)


def test_autoscaler_targets_the_deployment_on_cpu_and_saturation(
    rendered: tuple[dict, ...],
) -> None:
    deployment = one(rendered, "Deployment")
    hpa = one(rendered, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    resources = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert resources == ["cpu"]
    pods = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert pods == {
        "cvae_requests_in_flight",
        "cvae_queue_wait_seconds",
        "cvae_refusals_per_second",
    }
    scale_down = hpa["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 60


def test_disruption_budget_covers_the_server_pods_and_lets_drains_proceed(
    rendered: tuple[dict, ...],
) -> None:
    deployment = one(rendered, "Deployment")
    pdb = one(rendered, "PodDisruptionBudget")
    assert selector_matches(pdb["spec"]["selector"], pod_labels(deployment))
    hpa = one(rendered, "HorizontalPodAutoscaler")
    if "maxUnavailable" in pdb["spec"]:
        assert int(pdb["spec"]["maxUnavailable"]) >= 1
    else:
        assert int(pdb["spec"]["minAvailable"]) < hpa["spec"]["minReplicas"]


def test_service_monitor_scrapes_the_metrics_port_of_exactly_one_service(
    rendered: tuple[dict, ...],
) -> None:
    deployment = one(rendered, "Deployment")
    monitor = one(rendered, "ServiceMonitor")
    selected = [
        s
        for s in objects(rendered, "Service")
        if selector_matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert len(selected) == 1, "one Service, or each pod is scraped twice"
    ports = {p["name"]: p for p in selected[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        port = ports[endpoint["port"]]
        assert _resolve_target_port(deployment, port["targetPort"]) == container_port(
            deployment, "metrics"
        )
        assert endpoint["path"] == "/metrics"


def test_overlays_keep_the_base_names_so_jobs_find_the_service() -> None:
    base_names = {
        (o["kind"], o["metadata"]["name"]) for o in render("base") if o["kind"] != "ConfigMap"
    }
    for kustomization in SERVING:
        names = {(o["kind"], o["metadata"]["name"]) for o in render(kustomization)}
        assert base_names <= names, kustomization


def _overlay_namespace(kustomization: str) -> str:
    return str(
        yaml.safe_load((K8S_DIR / kustomization / "kustomization.yaml").read_text())["namespace"]
    )


def test_overlays_put_everything_in_a_namespace_they_do_not_own() -> None:
    """`kubectl delete -k` of an overlay must not delete its namespace (and the dataset claim in
    it): the namespaces live in deploy/k8s/cluster, applied once."""
    cluster_namespaces = {n["metadata"]["name"] for n in objects(render("cluster"), "Namespace")}
    for kustomization in (k for k in SERVING if k.startswith("overlays/")):
        rendered = render(kustomization)
        assert not objects(rendered, "Namespace"), kustomization
        namespace = _overlay_namespace(kustomization)
        assert namespace in cluster_namespaces, kustomization
        for obj in rendered:
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


def test_cluster_namespaces_enforce_the_restricted_pod_security_standard() -> None:
    for namespace in objects(render("cluster"), "Namespace"):
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def _workloads() -> list[tuple[str, dict]]:
    found = [(k, one(render(k), "Deployment")) for k in SERVING]
    found += [(k, one(render(k), "Job")) for k in KUSTOMIZATIONS if k.startswith("jobs/")]
    return found


def test_pods_get_no_service_link_variables() -> None:
    """The Service `cvae` would inject CVAE_PORT=tcp://..., a setting's name, into every pod."""
    for kustomization, workload in _workloads():
        assert pod_spec(workload)["enableServiceLinks"] is False, kustomization


def test_every_priority_class_named_is_shipped_and_serving_outranks_batch() -> None:
    classes = {c["metadata"]["name"]: c for c in objects(render("cluster"), "PriorityClass")}
    named = {k: pod_spec(w)["priorityClassName"] for k, w in _workloads()}
    assert set(named.values()) <= set(classes), named
    serving = {named[k] for k in SERVING}
    batch = {named[k] for k in named if k.startswith("jobs/")}
    assert len(serving) == len(batch) == 1
    assert classes[serving.pop()]["value"] > classes[batch.pop()]["value"]
    assert not any(c.get("globalDefault") for c in classes.values())
    assert all(c.get("preemptionPolicy") == "Never" for c in classes.values() if c["value"] < 10**5)


def test_ephemeral_storage_requests_cover_the_scratch_volumes() -> None:
    """An emptyDir counts against ephemeral storage: the request must hold its size limit (and
    the limit must exceed it, or a full /tmp evicts the pod before the volume refuses writes)."""
    for kustomization, workload in _workloads():
        scratch = sum(
            quantity(v["emptyDir"].get("sizeLimit", "0"))
            for v in pod_spec(workload)["volumes"]
            if "emptyDir" in v
        )
        resources = container(workload)["resources"]
        assert quantity(resources["requests"]["ephemeral-storage"]) >= scratch, kustomization
        assert quantity(resources["limits"]["ephemeral-storage"]) > scratch, kustomization


def test_rollouts_wait_for_pods_to_stay_ready(rendered: tuple[dict, ...]) -> None:
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["minReadySeconds"] >= 5
    readiness = container(deployment)["readinessProbe"]
    assert deployment["spec"]["minReadySeconds"] >= readiness["periodSeconds"]


def test_prod_replicas_never_pile_onto_one_node() -> None:
    deployment = one(render("overlays/prod"), "Deployment")
    constraints = pod_spec(deployment)["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in constraints}
    host = by_key["kubernetes.io/hostname"]
    assert host["whenUnsatisfiable"] == "DoNotSchedule" and host["maxSkew"] == 1
    assert "pod-template-hash" in host["matchLabelKeys"]
    for constraint in constraints:
        assert selector_matches(constraint["labelSelector"], pod_labels(deployment))


def test_one_image_setting_for_the_server_and_the_jobs() -> None:
    """The images are set in one place (a component), and every workload runs the serving image
    or, for training and export, the training image of the same build (one tag)."""
    setting_files = [
        path.relative_to(K8S_DIR)
        for path in K8S_DIR.rglob("kustomization.yaml")
        if yaml.safe_load(path.read_text()).get("images")
    ]
    assert [str(p.parent) for p in setting_files] == ["components/image"], setting_files
    (setting,) = setting_files
    names = {i["newName"] for i in yaml.safe_load((K8S_DIR / setting).read_text())["images"]}
    images = {container(w)["image"] for _, w in _workloads()}
    assert {image.rsplit(":", 1)[0] for image in images} == names, images
    assert len({image.rsplit(":", 1)[1] for image in images}) == 1, images
    assert all(container(w)["imagePullPolicy"] == "IfNotPresent" for _, w in _workloads())
