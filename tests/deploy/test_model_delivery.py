"""Model versions from a shared volume: jobs/publish-models fills the claim that
components/model-volume mounts into every replica, and a running server picks up a newly
published version by hot reload. The Job's own arguments run through the image script."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.deploy.dockerfile import stages
from tests.deploy.manifests import (
    ROOT,
    container,
    one,
    pod_spec,
    render,
    render_with_components,
)
from tests.deploy.models import DEFAULT_MODEL, model_repository
from tests.deploy.server import running_server
from tests.service.modelrepo import write_version

_PUBLISH = "jobs/publish-models"
_IMAGE_SCRIPT = ROOT / "deploy" / "image.sh"


def _mounts(workload: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in container(workload)["volumeMounts"]}


def _claims(workload: dict) -> dict[str, str]:
    return {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(workload)["volumes"]
        if "persistentVolumeClaim" in v
    }


def _image_repository() -> str:
    (destination,) = [
        dest for _, sources, dest in stages()["serve"].copies() if "models/" in sources
    ]
    return destination.rstrip("/")


def test_every_replica_reads_the_claim_the_publish_job_writes(tmp_path: Path) -> None:
    deployment = one(
        render_with_components("overlays/prod", ["components/model-volume"], tmp_path), "Deployment"
    )
    config = one(render("overlays/prod"), "ConfigMap")["data"]
    repository = config["CVAE_MODEL_REPOSITORY"]
    assert repository == _image_repository(), "the volume hides the image's own copy"
    mount = _mounts(deployment)[repository]
    assert mount["readOnly"] is True
    served_claim = _claims(deployment)[mount["name"]]

    job = one(render(_PUBLISH), "Job")
    verb, source, destination = container(job)["args"]
    assert verb == "publish-models"
    assert source == _image_repository(), "publishes what the image carries"
    job_mount = _mounts(job)[destination]
    assert not job_mount.get("readOnly", False)
    assert _claims(job)[job_mount["name"]] == served_claim
    claim = one(render(_PUBLISH), "PersistentVolumeClaim", served_claim)
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "read on many nodes, written by one"
    assert claim["spec"]["storageClassName"], "the class is a knob, not the cluster default"


def _publish(source: Path, destination: Path) -> subprocess.CompletedProcess[str]:
    """The publish Job's container: the entrypoint with the Job's args, paths replaced."""
    job = one(render(_PUBLISH), "Job")
    verb, _image_source, _mount = container(job)["args"]  # their roles: checked above
    entrypoint = stages()["serve"].exec_form("ENTRYPOINT")
    args = [verb, str(source), str(destination)]
    command = ["/bin/sh", str(_IMAGE_SCRIPT), *entrypoint[2:], *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _same_tree(left: Path, right: Path) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.diff_files:
        return False
    return all(_same_tree(left / d, right / d) for d in comparison.common_dirs)


def test_publishing_copies_whole_versions_once(tmp_path: Path) -> None:
    source = tmp_path / "image-models"
    shutil.copytree(model_repository(tmp_path / "scratch"), source)
    volume = tmp_path / "volume"
    first = _publish(source, volume)
    assert first.returncode == 0, first.stderr
    assert _same_tree(source, volume)
    assert not list(volume.glob("*/.incoming-*")), "no temporary folder is left behind"
    # A published version is never rewritten: the next publish leaves its files alone.
    published = next(volume.glob("*/*/model.onnx"))
    before = published.stat().st_mtime_ns
    published.chmod(0o444)
    again = _publish(source, volume)
    assert again.returncode == 0, again.stderr
    assert "already published" in again.stdout
    assert published.stat().st_mtime_ns == before


def test_publishing_refuses_a_missing_source(tmp_path: Path) -> None:
    result = _publish(tmp_path / "nothing", tmp_path / "volume")
    assert result.returncode == 2
    assert not (tmp_path / "volume").exists()


def test_a_running_server_serves_a_newly_published_version(tmp_path: Path) -> None:
    image_one = tmp_path / "image-one"
    shutil.copytree(model_repository(tmp_path / "scratch"), image_one)
    volume = tmp_path / "volume"
    assert _publish(image_one, volume).returncode == 0
    name = DEFAULT_MODEL  # the default of the repository's models
    newest = max(int(p.name) for p in (volume / name).iterdir())
    # The next image carries one more version.
    image_two = tmp_path / "image-two"
    shutil.copytree(image_one, image_two)
    write_version(image_two, str(newest + 1), name=name)
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_MODEL_REPOSITORY": str(volume),
        "CVAE_MODEL_NAME": DEFAULT_MODEL,
        "CVAE_CPUS": "1",
        "CVAE_RELOAD_INTERVAL_S": "0.5",
    }
    command = [sys.executable, "-m", "cvae", "serve"]
    with running_server(command, environ, tmp_path / "server.log", cwd=ROOT) as server:
        assert max(_loaded(server), key=int) == str(newest)
        assert _publish(image_two, volume).returncode == 0
        deadline = time.monotonic() + 60
        while _loaded(server) != {str(newest), str(newest + 1)} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _loaded(server) == {str(newest), str(newest + 1)}, server.log.read_text()
        # The new version serves; a client pinning the previous one still gets it.
        assert server.generate([1, 2]).model_version == str(newest + 1)
        assert server.health() == health_pb2.HealthCheckResponse.SERVING


def _loaded(server: object) -> set[str]:
    """The default model's loaded versions (the repository may hold other models)."""
    samples = server.scrape_values()  # type: ignore[attr-defined]
    return {
        labels["version"]
        for labels, value in samples.get("cvae_model_info", [])
        if value and labels["name"] == DEFAULT_MODEL
    }


@pytest.mark.parametrize("name", ["0", "01", "v2", ".incoming-3"])
def test_folders_that_are_not_versions_are_not_published(tmp_path: Path, name: str) -> None:
    source = tmp_path / "image-models"
    (source / "cvae-mnist" / name).mkdir(parents=True)
    (source / "cvae-mnist" / name / "model.json").write_text("{}")
    result = _publish(source, tmp_path / "volume")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "volume" / "cvae-mnist" / name).exists()
