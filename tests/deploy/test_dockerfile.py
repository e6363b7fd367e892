"""deploy/Dockerfile: a pinned base, a serving stage without build tools or torch, non-root,
read-only-root friendly, the model repository baked in, and a training target."""

from __future__ import annotations

import re

from tests.deploy.dockerfile import last_stage, stages
from tests.deploy.manifests import ROOT, container, container_port, one, pod_spec, render
from tests.deploy.models import DEFAULT_MODEL

_SERVE = "serve"
_INSTALL = re.compile(r"^sh deploy/image\.sh install (?P<kind>serve|train) (?P<venv>\S+)")


def test_stages_are_builder_train_and_serve_with_serve_the_default_target() -> None:
    assert list(stages()) == ["builder", "train", "serve"]
    assert last_stage().name == _SERVE  # `docker build` without --target builds the last stage


def test_every_stage_uses_the_same_pinned_python_base() -> None:
    bases = {stage.base for stage in stages().values()}
    assert len(bases) == 1, f"the venv copied between stages needs one interpreter: {bases}"
    (base,) = bases
    image, _, tag = base.partition(":")
    assert image == "python"
    assert re.fullmatch(r"3\.11-slim-\w+(@sha256:[0-9a-f]{64})?", tag), f"unpinned base {base}"


def test_builder_installs_the_serve_extra_and_train_the_train_extra() -> None:
    runs = {name: " ".join(stage.values("RUN")) for name, stage in stages().items()}
    builder = _INSTALL.match(runs["builder"])
    train = _INSTALL.match(runs["train"])
    assert builder and builder["kind"] == "serve"
    assert train and train["kind"] == "train"


def test_serve_stage_installs_nothing_and_copies_only_the_venv_from_the_builder() -> None:
    serve = stages()[_SERVE]
    builder_venv = _INSTALL.match(" ".join(stages()["builder"].values("RUN")))
    assert builder_venv
    for run in serve.values("RUN"):
        assert not re.search(r"\b(apt-get|apk|gcc|make|pip install|image\.sh install)\b", run), run
    from_builder = [(src, dest) for stage, src, dest in serve.copies() if stage is not None]
    assert from_builder == [([builder_venv["venv"]], builder_venv["venv"])]


def test_serve_stage_runs_as_the_non_root_user_the_pods_run_as() -> None:
    (user,) = stages()[_SERVE].values("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets Kubernetes check runAsNonRoot"
    deployment = one(render("base"), "Deployment")
    security = pod_spec(deployment)["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))


def test_serve_stage_environment_suits_a_read_only_root() -> None:
    env = stages()[_SERVE].env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    for variable in ("HOME", "XDG_CACHE_HOME", "TMPDIR"):
        assert env[variable].startswith("/tmp"), f"{variable}={env[variable]} is outside /tmp"
    assert stages()[_SERVE].values("WORKDIR")[-1] == "/tmp"
    # /tmp is the one writable place in the pod too.
    deployment = one(render("base"), "Deployment")
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_the_default_model_repository_is_baked_in_where_the_server_looks() -> None:
    serve = stages()[_SERVE]
    repository = serve.env()["CVAE_MODEL_REPOSITORY"]
    assert (None, ["models/"], repository + "/") in serve.copies()
    config = one(render("base"), "ConfigMap")
    assert config["data"]["CVAE_MODEL_REPOSITORY"] == repository
    # It holds several models: the image and the pods name the default one, which ships.
    default = serve.env()["CVAE_MODEL_NAME"]
    assert config["data"]["CVAE_MODEL_NAME"] == default == DEFAULT_MODEL
    assert (ROOT / "models" / default).is_dir()


def test_entrypoint_starts_the_server_through_the_image_script() -> None:
    serve = stages()[_SERVE]
    assert serve.exec_form("ENTRYPOINT") == ["/bin/sh", "/opt/cvae/image.sh", "start"]
    assert serve.exec_form("CMD") == ["serve"]
    assert (None, ["deploy/image.sh"], "/opt/cvae/image.sh") in serve.copies()
    deployment = one(render("base"), "Deployment")
    assert container(deployment)["args"] == ["serve"]


def test_exposed_ports_are_the_pods_container_ports() -> None:
    (exposed,) = stages()[_SERVE].values("EXPOSE")
    deployment = one(render("base"), "Deployment")
    ports = {container_port(deployment, "grpc"), container_port(deployment, "metrics")}
    assert {int(p) for p in exposed.split()} == ports
