"""Every object deploy/k8s renders is valid for the pinned Kubernetes versions (strict schemas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import KUSTOMIZATIONS, render

# The oldest release the manifests need (the native `preStop: sleep` action is on by default
# from 1.30) and a current one. kubernetes-validate ships these schemas: no network.
KUBERNETES_VERSIONS = ("1.30", "1.33")

# Custom resources kubernetes-validate has no schema for, with the schema we check them against.
_SCHEMAS = Path(__file__).parent / "schemas"
_CUSTOM_RESOURCE_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
    ("cert-manager.io/v1", "Certificate"): "certificate-cert-manager.io-v1.json",
}


def _custom_schema(obj: dict[str, Any]) -> dict[str, Any] | None:
    file_name = _CUSTOM_RESOURCE_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    return json.loads((_SCHEMAS / file_name).read_text()) if file_name else None


def _cases() -> list[Any]:
    return [
        pytest.param(kustomization, version, id=f"{kustomization}-k8s{version}")
        for kustomization in KUSTOMIZATIONS
        for version in KUBERNETES_VERSIONS
    ]


def test_every_kustomization_is_found() -> None:
    assert {"base", "overlays/dev", "overlays/prod", "overlays/prod-tls", "jobs/generate"} <= set(
        KUSTOMIZATIONS
    )


@pytest.mark.parametrize(("kustomization", "version"), _cases())
def test_rendered_objects_validate_against_kubernetes_schemas(
    kustomization: str, version: str
) -> None:
    rendered = render(kustomization)
    assert rendered, f"{kustomization} renders nothing"
    for obj in rendered:
        name = f"{kustomization}: {obj['kind']}/{obj['metadata']['name']}"
        custom = _custom_schema(obj)
        if custom is not None:
            jsonschema.Draft202012Validator.check_schema(custom)
            errors = [e.message for e in jsonschema.Draft202012Validator(custom).iter_errors(obj)]
            assert not errors, f"{name}: {errors}"
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{name} is invalid for Kubernetes {version} at {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{name}: no schema to check it against ({error.message})")


def test_the_validator_rejects_a_broken_deployment() -> None:
    """The strict schemas do catch mistakes: an unknown field and a named gRPC probe port."""
    deployment = next(o for o in render("base") if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["port"] = "grpc"  # gRPC probes take a number only
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_the_service_monitor_schema_rejects_a_typo() -> None:
    monitor = next(o for o in render("base") if o["kind"] == "ServiceMonitor")
    schema = _custom_schema(monitor)
    assert schema is not None
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["intervall"] = "15s"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


def test_the_prometheus_rule_schema_rejects_a_typo() -> None:
    rule = next(o for o in render("base") if o["kind"] == "PrometheusRule")
    schema = _custom_schema(rule)
    assert schema is not None
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(rule))
    broken = json.loads(json.dumps(rule))
    broken["spec"]["groups"][0]["rules"][0]["exprr"] = "up"
    assert list(validator.iter_errors(broken))
    broken = json.loads(json.dumps(rule))
    alert = next(r for g in broken["spec"]["groups"] for r in g["rules"] if "alert" in r)
    alert["for"] = "10 minutes"
    assert list(validator.iter_errors(broken))
    alert["for"] = "10m"
    alert["record"] = "both:record:and_alert"
    assert list(validator.iter_errors(broken))
