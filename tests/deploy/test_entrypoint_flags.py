"""What the image and the manifests tell `cvae` exists in the real command: flags, variables
and the values themselves (through the service's own settings validation)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import pytest

from service import settings as service_settings
from tests.deploy.dockerfile import stages
from tests.deploy.manifests import (
    ROOT,
    container,
    cpu_budget,
    one,
    render,
    serving_kustomizations,
)

_IMAGE_SCRIPT = ROOT / "deploy" / "image.sh"
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@functools.cache
def _help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cvae", *command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _flags(*command: str) -> set[str]:
    return set(_FLAG.findall(_help(*command)))


def _flag_for(variable: str) -> str:
    return "--" + variable.removeprefix("CVAE_").lower().replace("_", "-")


def _serve_block() -> str:
    """The `exec cvae serve ...` command of the image script, continuation lines joined."""
    text = _IMAGE_SCRIPT.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if re.match(r"\s*exec cvae serve\b", line)]
    return line


def test_image_script_passes_only_flags_that_cvae_serve_has() -> None:
    passed = set(_FLAG.findall(_serve_block()))
    assert passed, "the script passes --host and --model-repository"
    assert passed <= _flags("serve"), passed - _flags("serve")


def _server_variables() -> dict[str, set[str]]:
    """Every CVAE_* variable the image or a pod sets, with where it is set."""
    found: dict[str, set[str]] = {}
    for name in stages()["serve"].env():
        if name.startswith("CVAE_"):
            found.setdefault(name, set()).add("Dockerfile")
    found.setdefault("CVAE_HOST", set()).add("image.sh")
    found.setdefault("CVAE_MODEL_REPOSITORY", set()).add("image.sh")
    for kustomization in serving_kustomizations():
        rendered = render(kustomization)
        for key in one(rendered, "ConfigMap")["data"]:
            found.setdefault(key, set()).add(kustomization)
        for env in container(one(rendered, "Deployment")).get("env", []):
            found.setdefault(env["name"], set()).add(kustomization)
    return found


@pytest.mark.parametrize("variable", sorted(_server_variables()))
def test_every_server_variable_is_a_documented_serve_setting(variable: str) -> None:
    assert variable.startswith("CVAE_"), variable
    assert _flag_for(variable) in _flags("serve"), f"{variable}: no {_flag_for(variable)}"
    assert variable in _help("serve"), f"`cvae serve --help` does not name {variable}"


@pytest.mark.parametrize("kustomization", serving_kustomizations())
def test_the_pod_environment_is_accepted_by_the_service_settings(kustomization: str) -> None:
    """The ConfigMap plus the downward-API thread count, through the service's own validation."""
    rendered = render(kustomization)
    deployment = one(rendered, "Deployment")
    environ = dict(one(rendered, "ConfigMap")["data"])
    environ["CVAE_CPUS"] = str(cpu_budget(deployment))
    environ["CVAE_HOST"] = stages()["serve"].env()["CVAE_HOST"]
    settings = service_settings.from_sources({}, environ)
    assert settings.cpus == cpu_budget(deployment)
    assert settings.port == int(environ["CVAE_PORT"])


def test_the_service_settings_refuse_a_bad_pod_environment() -> None:
    environ = dict(one(render("base"), "ConfigMap")["data"])
    environ["CVAE_QUEUE_SIZE"] = "1"  # smaller than one request may be
    with pytest.raises(service_settings.SettingsError):
        service_settings.from_sources({}, environ)


def test_the_generate_job_passes_only_flags_that_cvae_generate_has() -> None:
    args = container(one(render("jobs/generate"), "Job"))["args"]
    assert args[0] == "generate"
    passed = {arg for arg in args[1:] if arg.startswith("--")}
    assert passed <= _flags("generate"), passed - _flags("generate")
    assert "--shard-index" in _flags("generate") and "--shard-count" in _flags("generate")
    # The pod sets no --shard-index/--shard-count: the command reads them from these variables.
    assert not passed & {"--shard-index", "--shard-count"}
    for variable in ("JOB_COMPLETION_INDEX", "CVAE_SHARD_COUNT"):
        assert variable in _help("generate"), f"`cvae generate --help` does not name {variable}"


def test_the_merge_job_passes_only_flags_that_cvae_generate_merge_has() -> None:
    args = container(one(render("jobs/merge"), "Job"))["args"]
    assert args[:2] == ["generate", "merge"]
    passed = {arg for arg in args[2:] if arg.startswith("--")}
    assert passed <= _flags("generate", "merge"), passed - _flags("generate", "merge")
