"""Render the kustomizations under deploy/k8s with the real `kubectl kustomize`, and query them."""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
# Every folder with a kustomization.yaml is rendered and checked: a new overlay is covered
# without editing the tests.
# Components (kind: Component) cannot be built alone: they are checked through what includes them.
KUSTOMIZATIONS = sorted(
    str(path.parent.relative_to(K8S_DIR))
    for path in K8S_DIR.rglob("kustomization.yaml")
    if yaml.safe_load(path.read_text()).get("kind", "Kustomization") == "Kustomization"
)
COMPONENTS = sorted(
    str(path.parent.relative_to(K8S_DIR))
    for path in K8S_DIR.rglob("kustomization.yaml")
    if yaml.safe_load(path.read_text()).get("kind") == "Component"
)

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is needed to render deploy/k8s (kubectl kustomize)"
    return found


@functools.cache
def render(kustomization: str) -> tuple[Obj, ...]:
    """The objects `kubectl kustomize deploy/k8s/<kustomization>` prints."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S_DIR / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_with_components(
    kustomization: str, components: list[str], scratch: Path
) -> tuple[Obj, ...]:
    """`kustomization` with extra components (paths under deploy/k8s), as an operator adds them:
    through a kustomization in `scratch` that includes both (kustomize wants relative paths)."""
    folder = scratch / "with-components"
    folder.mkdir(parents=True, exist_ok=True)

    def relative(path: str) -> str:
        return os.path.relpath(K8S_DIR / path, folder)

    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [relative(kustomization)],
                "components": [relative(c) for c in components],
            }
        )
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {folder} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def serving_kustomizations() -> list[str]:
    """The ones that deploy the server (base and overlays), as opposed to on-demand jobs."""
    return [k for k in KUSTOMIZATIONS if any(o["kind"] == "Deployment" for o in render(k))]


def objects(rendered: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in rendered if obj["kind"] == kind]


def one(rendered: tuple[Obj, ...], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects(rendered, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a label set."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def service_selects(service: Obj, labels: dict[str, str]) -> bool:
    """A Service's selector is a plain map: every pair must be among the pod's labels."""
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def container(workload: Obj, name: str | None = None) -> Obj:
    containers = pod_spec(workload)["containers"]
    if name is None:
        assert len(containers) == 1, "expected a single container"
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def container_port(workload: Obj, port_name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container(workload).get("ports", [])}
    assert port_name in ports, f"no container port named {port_name!r} in {sorted(ports)}"
    return int(ports[port_name])


_QUANTITY = re.compile(r"^(?P<number>[0-9.]+)(?P<suffix>m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("250m", "2", "512Mi") as a number."""
    match = _QUANTITY.match(str(value))
    assert match, f"unsupported quantity {value!r}"
    return float(match["number"]) * _SUFFIX[match["suffix"]]


def cpu_budget(workload: Obj) -> int:
    """What the CVAE_CPUS resourceFieldRef (divisor 1) gives the container: ceil(cores) of the
    resource it names, read from the container's resources as the kubelet would."""
    server = container(workload)
    env = {e["name"]: e for e in server.get("env", [])}
    field = env["CVAE_CPUS"]["valueFrom"]["resourceFieldRef"]
    kind, _, resource = field["resource"].partition(".")
    value = server["resources"].get(kind, {}).get(resource)
    assert value is not None, f"{field['resource']} is not set: the kubelet would give node CPUs"
    return math.ceil(quantity(value) / quantity(field.get("divisor", "1")))
