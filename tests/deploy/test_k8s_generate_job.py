"""The Indexed Job that writes a dataset in shards agrees with the serving stack it calls."""

from __future__ import annotations

from urllib.parse import urlparse

from tests.deploy.manifests import (
    container,
    objects,
    one,
    pod_labels,
    pod_spec,
    render,
    selector_matches,
    service_selects,
)

_JOB = "jobs/generate"


def _job() -> dict:
    return one(render(_JOB), "Job")


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_job_is_indexed_with_one_shard_per_completion() -> None:
    job = _job()
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["completionMode"] == "Indexed"
    env = {e["name"]: e.get("value") for e in container(job).get("env", [])}
    # JOB_COMPLETION_INDEX comes from Kubernetes; the count must match the completions.
    assert int(env["CVAE_SHARD_COUNT"]) == job["spec"]["completions"]
    assert "JOB_COMPLETION_INDEX" not in env
    assert 1 <= job["spec"]["parallelism"] <= job["spec"]["completions"]
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_job_writes_to_the_claim_it_ships() -> None:
    rendered = render(_JOB)
    job = one(rendered, "Job")
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    claims = {
        m["mountPath"]: volumes[m["name"]]["persistentVolumeClaim"]["claimName"]
        for m in container(job)["volumeMounts"]
        if "persistentVolumeClaim" in volumes[m["name"]]
    }
    out = _arg(container(job)["args"], "--out")
    (mount_path,) = [path for path in claims if out.startswith(path.rstrip("/") + "/")]
    claim = one(rendered, "PersistentVolumeClaim", claims[mount_path])
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "shard pods may share no node"


def test_job_calls_the_headless_service_on_its_grpc_port() -> None:
    target = urlparse(_arg(container(_job())["args"], "--server"))
    assert target.scheme == "dns", "dns:/// lets the client round-robin over the replicas"
    host, _, port = target.path.lstrip("/").partition(":")
    for kustomization in ("base", "overlays/dev", "overlays/prod"):
        service = one(render(kustomization), "Service", host)
        assert service["spec"]["clusterIP"] == "None"
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert grpc["port"] == int(port)


def test_job_pods_are_not_taken_for_server_pods() -> None:
    labels = pod_labels(_job())
    base = render("base")
    for service in objects(base, "Service"):
        assert not service_selects(service, labels), service["metadata"]["name"]
    assert not selector_matches(one(base, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert not selector_matches(one(base, "Deployment")["spec"]["selector"], labels)


def test_job_runs_the_serving_image_locked_down() -> None:
    job = _job()
    deployment = one(render("base"), "Deployment")
    assert (
        container(job)["image"].rsplit(":", 1)[0]
        == container(deployment)["image"].rsplit(":", 1)[0]
    )
    assert pod_spec(job)["securityContext"] == pod_spec(deployment)["securityContext"]
    assert container(job)["securityContext"] == container(deployment)["securityContext"]
    mounts = {m["mountPath"] for m in container(job)["volumeMounts"]}
    assert "/tmp" in mounts
