"""The training Job (Indexed, torchrun's c10d rendezvous through a headless Service) and the
export Job after it agree with each other, with the real `cvae` and `torchrun` flags, and with
the serving stack's model repository."""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import pytest

from tests.deploy.manifests import (
    K8S_DIR,
    ROOT,
    container,
    objects,
    one,
    pod_labels,
    pod_spec,
    render,
    selector_matches,
    service_selects,
)
from tests.deploy.netpol import Pod, allowed

_TRAIN, _EXPORT = "jobs/train", "jobs/export"
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _job(kustomization: str) -> dict:
    return one(render(kustomization), "Job")


def _torchrun_and_cvae_args() -> tuple[dict[str, str], list[str]]:
    """torchrun's --name=value options, and the `cvae` arguments after `-m cvae`."""
    train = container(_job(_TRAIN), "train")
    assert train["command"] == ["torchrun"]
    args = train["args"]
    split = args.index("-m")
    assert args[split + 1] == "cvae"
    options = dict(arg.removeprefix("--").split("=", 1) for arg in args[:split])
    return options, args[split + 2 :]


@functools.cache
def _help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_one_torchrun_node_per_pod_of_the_indexed_job() -> None:
    job = _job(_TRAIN)
    options, _ = _torchrun_and_cvae_args()
    assert job["spec"]["completionMode"] == "Indexed"
    assert int(options["nnodes"]) == job["spec"]["completions"] == job["spec"]["parallelism"]
    assert options["rdzv-backend"] == "c10d"
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["maxFailedIndexes"] == 0, "one index that gives up fails the run"


def test_rendezvous_is_pod_zero_through_the_headless_service() -> None:
    rendered = render(_TRAIN)
    job = one(rendered, "Job")
    options, _ = _torchrun_and_cvae_args()
    host, _, port = options["rdzv-endpoint"].partition(":")
    pod, _, subdomain = host.partition(".")
    # An Indexed Job's pod i has the hostname <job name>-<i>; its subdomain is the Service.
    assert pod == f"{job['metadata']['name']}-0"
    assert pod_spec(job)["subdomain"] == subdomain
    service = one(rendered, "Service", subdomain)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True, "Job pods are never Ready-probed"
    assert service_selects(service, pod_labels(job))
    (rendezvous,) = service["spec"]["ports"]
    assert rendezvous["port"] == int(port)
    ports = {p["name"]: p["containerPort"] for p in container(job, "train")["ports"]}
    assert ports[rendezvous["targetPort"]] == int(port)


def test_torchrun_and_cvae_train_know_every_flag_the_job_passes() -> None:
    options, cvae_args = _torchrun_and_cvae_args()
    torchrun_flags = set(_FLAG.findall(_help("torch.distributed.run")))
    assert {f"--{name}" for name in options} <= torchrun_flags
    assert cvae_args[0] == "train"
    passed = {arg for arg in cvae_args[1:] if arg.startswith("--")}
    train_flags = set(_FLAG.findall(_help("cvae", "train")))
    assert passed <= train_flags, passed - train_flags
    assert "--auto-resume" in passed, "a restarted worker must continue the run, not restart it"
    assert "--nproc-per-node" not in passed, "torchrun already started this process"


def _claim_of(job: dict, container_name: str, path: str) -> str:
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    every = pod_spec(job).get("initContainers", []) + pod_spec(job)["containers"]
    (mounted,) = [c for c in every if c["name"] == container_name]
    claims = {
        m["mountPath"]: volumes[m["name"]]["persistentVolumeClaim"]["claimName"]
        for m in mounted["volumeMounts"]
        if "persistentVolumeClaim" in volumes[m["name"]]
    }
    (mount_path,) = [mount for mount in claims if path.startswith(mount.rstrip("/") + "/")]
    return claims[mount_path]


def test_export_evaluates_and_publishes_the_run_the_training_job_writes() -> None:
    _, cvae_args = _torchrun_and_cvae_args()
    run = _arg(cvae_args, "--out")
    train_claim = _claim_of(_job(_TRAIN), "train", run + "/last.pt")
    assert (
        "ReadWriteMany"
        in one(render(_TRAIN), "PersistentVolumeClaim", train_claim)["spec"]["accessModes"]
    ), "the training pods may share no node"

    export_job = _job(_EXPORT)
    (evaluate,) = pod_spec(export_job)["initContainers"]
    export = container(export_job, "export")
    assert evaluate["args"][:2] == ["evaluate", f"{run}/best.pt"]
    assert export["args"][:2] == ["export", f"{run}/best.pt"]
    assert _arg(export["args"], "--metrics") == _arg(evaluate["args"], "--out") + "/metrics.json"
    for name, path in (("evaluate", run + "/best.pt"), ("export", run + "/best.pt")):
        assert _claim_of(export_job, name, path) == train_claim
    for command, args in (("evaluate", evaluate["args"]), ("export", export["args"])):
        flags = {arg for arg in args if arg.startswith("--")}
        known = set(_FLAG.findall(_help("cvae", command)))
        assert flags <= known, flags - known


def test_export_publishes_a_version_no_shipped_model_has() -> None:
    """A version's bytes never change once published: the Job must name a new one."""
    args = container(_job(_EXPORT), "export")["args"]
    name, version = _arg(args, "--name"), int(_arg(args, "--version"))
    shipped = [int(p.name) for p in (ROOT / "models" / name).iterdir() if p.name.isdigit()]
    assert shipped and version > max(shipped)
    claim = _claim_of(_job(_EXPORT), "export", _arg(args, "--repository") + "/" + name)
    # The claim jobs/publish-models creates and every replica reads (components/model-volume).
    publish = one(render("jobs/publish-models"), "Job")
    assert claim == _claim_of(publish, "publish", "/repository/" + name)
    assert one(render("jobs/publish-models"), "PersistentVolumeClaim", claim)
    assert (
        "claimName: " + claim
        in (K8S_DIR / "components" / "model-volume" / "kustomization.yaml").read_text()
    )


@pytest.mark.parametrize("kustomization", [_TRAIN, _EXPORT])
def test_jobs_run_the_training_image_locked_down_and_apart_from_the_server(
    kustomization: str,
) -> None:
    job = _job(kustomization)
    deployment = one(render("base"), "Deployment")
    spec = pod_spec(job)
    every = spec.get("initContainers", []) + spec["containers"]
    for each in every:
        assert each["image"].rsplit(":", 1)[0].endswith("/cvae-mnist-train")
        assert each["image"].rsplit(":", 1)[1] == container(deployment)["image"].rsplit(":", 1)[1]
        assert each["securityContext"] == container(deployment)["securityContext"]
        assert "/tmp" in {m["mountPath"] for m in each["volumeMounts"]}
        assert each["resources"]["requests"] and each["resources"]["limits"]
    assert spec["securityContext"] == pod_spec(deployment)["securityContext"]
    labels = pod_labels(job)
    base = render("base")
    for service in objects(base, "Service"):
        assert not service_selects(service, labels), service["metadata"]["name"]
    assert not selector_matches(one(base, "Deployment")["spec"]["selector"], labels)


def test_the_training_image_is_the_dockerfiles_train_stage() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--target train -t cvae-mnist-train:" in dockerfile
    assert re.search(r"^FROM \S+ AS train$", dockerfile, re.MULTILINE)


def _in_namespace(objs: list[dict], namespace: str) -> list[dict]:
    """The objects as `kubectl apply -n <namespace> -k` creates them."""
    return [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in objs]


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_training_pods_reach_each_other_and_dns_and_nothing_else(overlay: str) -> None:
    served = render(overlay)
    namespace = one(served, "Deployment")["metadata"]["namespace"]
    policies = objects(served, "NetworkPolicy") + _in_namespace(
        objects(render(_TRAIN), "NetworkPolicy"), namespace
    )
    job = _job(_TRAIN)
    peer = Pod(namespace, pod_labels(job), ports={"rendezvous": 29400})
    for port in (29400, 41234):  # the rendezvous, and a port torchrun picks for the group
        assert allowed(policies, peer, peer, port)
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    assert allowed(policies, peer, dns, 53, "UDP")
    server = Pod(namespace, pod_labels(one(served, "Deployment")), ports={"grpc": 50051})
    assert not allowed(policies, peer, server, 50051)
    stranger = Pod(namespace, {"app": "neighbour"})
    assert not allowed(policies, stranger, peer, 29400)
    assert not allowed(policies, peer, Pod("default", {"app": "web"}), 443)
    exporter = Pod(namespace, pod_labels(_job(_EXPORT)))
    assert not allowed(policies, exporter, peer, 29400)
