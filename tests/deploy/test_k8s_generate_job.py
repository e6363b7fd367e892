"""The Indexed Job that writes a dataset in shards, and the Job that merges them, agree with each
other and with the serving stack they call."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from cvae.jobs import workdir
from tests.deploy.manifests import (
    ROOT,
    container,
    objects,
    one,
    pod_labels,
    pod_spec,
    render,
    render_with_components,
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


def _co_located(job: dict) -> bool:
    """Whether the pod must run on the node of the other users of its claim (pod affinity on
    kubernetes.io/hostname, selecting every Job pod of the claim)."""
    terms = (
        pod_spec(job)
        .get("affinity", {})
        .get("podAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", [])
    )
    users = [pod_labels(_job(k)) for k in _JOBS]
    return any(
        term["topologyKey"] == "kubernetes.io/hostname"
        and all(selector_matches(term["labelSelector"], labels) for labels in users)
        for term in terms
    )


def test_job_writes_to_the_claim_it_ships() -> None:
    job = _job()
    claim = one(render(_JOB), "PersistentVolumeClaim", _claim_of(job, _shard_folders()[0]))
    if claim["spec"]["accessModes"] == ["ReadWriteOnce"]:
        # One node may mount it: every pod of either Job must go to the same node.
        assert all(_co_located(_job(k)) for k in _JOBS)
    else:
        assert "ReadWriteMany" in claim["spec"]["accessModes"], "shard pods may share no node"


def test_the_rwx_component_spreads_the_shards_on_a_named_class(tmp_path: Path) -> None:
    rendered = render_with_components(_JOB, ["components/datasets-rwx"], tmp_path)
    claim = one(rendered, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"]
    assert "affinity" not in pod_spec(one(rendered, "Job"))
    merge = one(render_with_components(_MERGE, ["components/datasets-rwx"], tmp_path), "Job")
    assert "affinity" not in pod_spec(merge)


def test_every_shard_pins_one_model_version_that_ships() -> None:
    """Shards from different versions cannot be merged: the version is fixed in the Job."""
    args = container(_job())["args"]
    version = _arg(args, "--model-version")
    assert args.count("--model-version") == 1
    assert not _REFERENCE.search(version), "not from a per-pod variable"
    shipped = {p.parent.name for p in (ROOT / "models").glob("*/*/model.json")}
    assert version in shipped, (version, shipped)


def test_merge_waits_for_every_shard_to_finish() -> None:
    """Applied early (GitOps), the merge must wait, not fail: its init container polls for each
    shard's shard.json, the file `cvae generate` writes last."""
    merge_job = _job(_MERGE)
    (init,) = pod_spec(merge_job)["initContainers"]
    assert init["args"][0] == "wait-for"
    waited = init["args"][1:]
    assert waited == [f"{folder}/{workdir._SHARD_NAME}" for folder in _shard_folders()]
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert mounts["/data"]["name"] == next(
        m["name"] for m in container(merge_job)["volumeMounts"] if m["mountPath"] == "/data"
    )
    assert init["securityContext"] == container(merge_job)["securityContext"]
    assert init["image"] == container(merge_job)["image"]
    # It may wait as long as the generate Job may run, and still have time to merge.
    assert merge_job["spec"]["activeDeadlineSeconds"] > _job()["spec"]["activeDeadlineSeconds"]


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


def test_the_merge_init_container_waits_until_every_shard_is_marked_finished(
    tmp_path: Path,
) -> None:
    """Its own arguments through the image script: it keeps polling while a shard.json is
    missing and returns 0 once all exist."""
    (init,) = pod_spec(_job(_MERGE))["initContainers"]
    files = [Path(arg.replace("/data/", f"{tmp_path}/")) for arg in init["args"][1:]]
    for path in files[:-1]:
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    command = ["/bin/sh", str(ROOT / "deploy" / "image.sh"), "start", *init["args"][:1]]
    environ = {"PATH": "/usr/bin:/bin", "CVAE_WAIT_INTERVAL_S": "0.1"}
    with subprocess.Popen(
        [*command, *map(str, files)], env=environ, stdout=subprocess.PIPE, text=True
    ) as waiting:
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.5)  # the last shard is not finished: still waiting
        files[-1].parent.mkdir(parents=True)
        files[-1].write_text("{}")
        assert waiting.wait(timeout=30) == 0
        output = waiting.stdout.read() if waiting.stdout else ""
    assert f"waiting for {files[-1]}" in output
