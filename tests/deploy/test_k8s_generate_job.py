"""The Indexed Job that writes a dataset in shards, and the Job that merges them, agree with each
other and with the serving stack they call."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

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
_MERGE = "jobs/merge"
_JOBS = (_JOB, _MERGE)
_REFERENCE = re.compile(r"\$\((\w+)\)")


def _job(kustomization: str = _JOB) -> dict:
    return one(render(kustomization), "Job")


def _shard_folders() -> list[str]:
    """The --out of each shard pod, with its completion index filled in."""
    job = _job()
    out = _arg(container(job)["args"], "--out")
    env = {e["name"]: e for e in container(job)["env"]}
    (variable,) = _REFERENCE.findall(out)
    field = env[variable]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    return [out.replace(f"$({variable})", str(i)) for i in range(job["spec"]["completions"])]


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


def _claim_of(job: dict, path: str) -> str:
    """The PersistentVolumeClaim that `path` lies on inside the job's container."""
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    claims = {
        m["mountPath"]: volumes[m["name"]]["persistentVolumeClaim"]["claimName"]
        for m in container(job)["volumeMounts"]
        if "persistentVolumeClaim" in volumes[m["name"]]
    }
    (mount_path,) = [mount for mount in claims if path.startswith(mount.rstrip("/") + "/")]
    return claims[mount_path]


def test_job_writes_to_the_claim_it_ships() -> None:
    job = _job()
    claim = one(render(_JOB), "PersistentVolumeClaim", _claim_of(job, _shard_folders()[0]))
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "shard pods may share no node"


@pytest.mark.parametrize("kustomization", _JOBS)
def test_every_variable_the_arguments_name_is_defined(kustomization: str) -> None:
    """Kubernetes leaves an undefined $(NAME) in place, silently: refuse one."""
    job_container = container(_job(kustomization))
    defined = {e["name"] for e in job_container.get("env", [])}
    for arg in job_container["args"]:
        assert set(_REFERENCE.findall(arg)) <= defined, arg


def test_each_shard_writes_its_own_folder() -> None:
    folders = _shard_folders()
    assert len(set(folders)) == len(folders) == _job()["spec"]["completions"]


def test_merge_reads_exactly_the_shards_from_the_same_claim() -> None:
    merge_job = _job(_MERGE)
    args = container(merge_job)["args"]
    assert args[:2] == ["generate", "merge"]
    out = _arg(args, "--out")
    shards = [a for a in args[2:] if not a.startswith("--") and a != out]
    assert shards == _shard_folders()
    generate_claim = _claim_of(_job(), _shard_folders()[0])
    assert {_claim_of(merge_job, path) for path in [*shards, out]} == {generate_claim}
    assert out not in shards


def test_job_calls_the_headless_service_on_its_grpc_port() -> None:
    target = urlparse(_arg(container(_job())["args"], "--server"))
    assert target.scheme == "dns", "dns:/// lets the client round-robin over the replicas"
    host, _, port = target.path.lstrip("/").partition(":")
    for kustomization in ("base", "overlays/dev", "overlays/prod"):
        service = one(render(kustomization), "Service", host)
        assert service["spec"]["clusterIP"] == "None"
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert grpc["port"] == int(port)


@pytest.mark.parametrize("kustomization", _JOBS)
def test_job_pods_are_not_taken_for_server_pods(kustomization: str) -> None:
    labels = pod_labels(_job(kustomization))
    base = render("base")
    for service in objects(base, "Service"):
        assert not service_selects(service, labels), service["metadata"]["name"]
    assert not selector_matches(one(base, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert not selector_matches(one(base, "Deployment")["spec"]["selector"], labels)


@pytest.mark.parametrize("kustomization", _JOBS)
def test_job_runs_the_serving_image_locked_down(kustomization: str) -> None:
    job = _job(kustomization)
    deployment = one(render("base"), "Deployment")
    assert (
        container(job)["image"].rsplit(":", 1)[0]
        == container(deployment)["image"].rsplit(":", 1)[0]
    )
    assert pod_spec(job)["securityContext"] == pod_spec(deployment)["securityContext"]
    assert container(job)["securityContext"] == container(deployment)["securityContext"]
    mounts = {m["mountPath"] for m in container(job)["volumeMounts"]}
    assert "/tmp" in mounts
