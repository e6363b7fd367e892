"""The KServe example (deploy/kserve) fits the image and the service: the runtime's flags are
`cvae serve`'s and pass its settings validation, its ports and probes are the ones those flags
open, its container is a valid Kubernetes container, and the InferenceService names the model
the Open Inference Protocol will serve under that name.

No schema of KServe's custom resources can be had offline (their CRDs are not packaged on
PyPI): the container, the part Kubernetes itself runs, is checked against the core schema.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
from typing import Any

import kubernetes_validate
import yaml

from service import settings as service_settings
from tests.deploy.manifests import ROOT, kubectl, one, render

_KSERVE = ROOT / "deploy" / "kserve"
_KUBERNETES = "1.30"


@functools.cache
def _rendered() -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(_KSERVE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _runtime() -> dict[str, Any]:
    return one(_rendered(), "ServingRuntime")


def _container() -> dict[str, Any]:
    (container,) = _runtime()["spec"]["containers"]
    return container


def _settings() -> service_settings.ServiceSettings:
    args = _container()["args"]
    assert args[0] == "serve"
    parser = argparse.ArgumentParser()
    service_settings.add_arguments(parser)
    return service_settings.from_sources(parser.parse_args(args[1:]), {})


def test_the_runtime_and_the_inference_service_are_kserves_kinds() -> None:
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in _rendered()}
    assert kinds == {
        ("serving.kserve.io/v1alpha1", "ServingRuntime"),
        ("serving.kserve.io/v1beta1", "InferenceService"),
    }
    assert _container()["name"] == "kserve-container"  # the name KServe requires
    assert {"v2", "grpc-v2"} <= set(_runtime()["spec"]["protocolVersions"])


def test_the_runtime_passes_flags_the_service_accepts_and_listens_where_it_says() -> None:
    settings = _settings()  # unknown flags or bad values fail here
    container = _container()
    (port,) = container["ports"]
    assert port["containerPort"] == settings.http_port == 8080
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    annotations = _runtime()["metadata"]["annotations"]
    assert int(annotations["prometheus.kserve.io/port"]) == settings.metrics_port
    assert settings.port == 9000  # the gRPC port inferenceservice.yaml's comment names
    assert "containerPort: 9000" in (_KSERVE / "inferenceservice.yaml").read_text()


def test_the_runtime_container_is_a_valid_kubernetes_container() -> None:
    spec = _runtime()["spec"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cvae-runtime"},
        "spec": {"containers": spec["containers"], "volumes": spec["volumes"]},
    }
    kubernetes_validate.validate(pod, _KUBERNETES, strict=True)


def test_the_runtime_runs_the_deployments_image() -> None:
    deployment = one(render("base"), "Deployment")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert _container()["image"] == server["image"]
    assert _container()["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_inference_service_is_named_as_the_shipped_model_and_uses_the_runtime() -> None:
    service = one(_rendered(), "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == _runtime()["metadata"]["name"]
    formats = {entry["name"] for entry in _runtime()["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in _runtime()["spec"]["protocolVersions"]
    # The OIP model name is the repository folder's; KServe routes by the service's name, and
    # it is the default model of the repository's several (calls that name none get it).
    assert (ROOT / "models" / service["metadata"]["name"]).is_dir()
    env = {entry["name"]: entry["value"] for entry in model["env"]}
    assert env["CVAE_MODEL_NAME"] == service["metadata"]["name"]
