"""overlays/prod-tls: the certificate the pods mount, and the real server started with that
overlay's settings answering the kubelet's plaintext probes while its gRPC port speaks TLS only
(and, with components/mtls, only to clients with a certificate)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cvae.v1 import generator_pb2, generator_pb2_grpc
from tests.cvae.certs import CertificateFiles, make_certificates
from tests.deploy.manifests import (
    ROOT,
    container,
    container_port,
    one,
    pod_spec,
    render,
    render_with_components,
)
from tests.deploy.models import model_repository
from tests.deploy.server import free_port

_OVERLAY = "overlays/prod-tls"
_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _config(rendered: tuple[dict, ...]) -> dict[str, str]:
    (source,) = container(one(rendered, "Deployment"))["envFrom"]
    return dict(one(rendered, "ConfigMap", source["configMapRef"]["name"])["data"])


def test_the_pods_mount_the_secret_the_certificate_fills() -> None:
    rendered = render(_OVERLAY)
    deployment, certificate = one(rendered, "Deployment"), one(rendered, "Certificate")
    config = _config(rendered)
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    for variable in ("CVAE_TLS_CERT", "CVAE_TLS_KEY"):
        folder, _, file_name = config[variable].rpartition("/")
        mount = mounts[folder]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"]["secretName"] == certificate["spec"]["secretName"]
        assert file_name in {"tls.crt", "tls.key"}  # what cert-manager writes
    assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always"


def test_the_certificate_names_every_address_clients_dial() -> None:
    rendered = render(_OVERLAY)
    names = set(one(rendered, "Certificate")["spec"]["dnsNames"])
    for service in (o for o in rendered if o["kind"] == "Service"):
        name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
        assert {name, f"{name}.{namespace}", f"{name}.{namespace}.svc"} <= names, name


def test_the_probes_use_the_health_port_and_only_it_is_plaintext() -> None:
    rendered = render(_OVERLAY)
    deployment = one(rendered, "Deployment")
    config = _config(rendered)
    health = container_port(deployment, "health")
    assert int(config["CVAE_HEALTH_PORT"]) == health != container_port(deployment, "grpc")
    for probe in _PROBES:
        assert container(deployment)[probe]["grpc"]["port"] == health, probe
    # Clients reach the TLS port only: no Service exposes the health port.
    for service in (o for o in rendered if o["kind"] == "Service"):
        assert all(p["targetPort"] != "health" for p in service["spec"]["ports"])
        assert all(p.get("targetPort") != health for p in service["spec"]["ports"])


@dataclass(frozen=True)
class TlsServer:
    process: subprocess.Popen[bytes]
    port: int
    health_port: int
    certificates: CertificateFiles
    log: Path


def _health(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status)


def _generate(port: int, credentials: grpc.ChannelCredentials | None) -> list[int]:
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    )
    with channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        request = generator_pb2.GenerateRequest(labels=[3, 1], seed=2)
        return list(stub.Generate(request, timeout=10).labels)


@contextlib.contextmanager
def _tls_server(rendered: tuple[dict, ...], scratch: Path) -> Iterator[TlsServer]:
    """`cvae serve` with the overlay's ConfigMap: the secret's files and ports made local."""
    (scratch / "certs").mkdir()
    certificates = make_certificates(scratch / "certs")
    secret = {  # what cert-manager puts in the Secret, by file name
        "tls.crt": certificates.server_cert,
        "tls.key": certificates.server_key,
        "ca.crt": certificates.ca,
    }
    environ = _config(rendered)
    for variable, value in list(environ.items()):
        if variable.startswith("CVAE_TLS_"):
            environ[variable] = str(secret[value.rpartition("/")[2]])
    port, health_port = free_port(), free_port()
    environ |= {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_PORT": str(port),
        "CVAE_METRICS_PORT": "0",
        "CVAE_HEALTH_PORT": str(health_port),
        "CVAE_MODEL_REPOSITORY": str(model_repository(scratch / "models")),
        "CVAE_CPUS": "1",
        "CVAE_GRACE_PERIOD_S": "2",
    }
    log = scratch / "server.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cvae", "serve"],
            cwd=ROOT,
            env=environ,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = TlsServer(process, port, health_port, certificates, log)
    try:
        deadline = time.monotonic() + 90
        while True:  # the kubelet's startup probe: plaintext, on the health port
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(grpc.RpcError):
                if (
                    _health(health_port, "cvae.v1.Generator")
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _credentials(files: CertificateFiles, client_cert: bool) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.client_key.read_bytes() if client_cert else None,
        certificate_chain=files.client_cert.read_bytes() if client_cert else None,
    )


def test_the_probes_pass_against_the_real_tls_server(tmp_path: Path) -> None:
    with _tls_server(render(_OVERLAY), tmp_path) as server:
        SERVING = health_pb2.HealthCheckResponse.SERVING
        for probe in _PROBES:
            service = container(one(render(_OVERLAY), "Deployment"))[probe]["grpc"].get(
                "service", ""
            )
            assert _health(server.health_port, service) == SERVING, probe
        # The gRPC port speaks TLS only; the health port carries nothing but health.
        assert _generate(server.port, _credentials(server.certificates, False)) == [3, 1]
        with pytest.raises(grpc.RpcError) as plaintext:
            _generate(server.port, None)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as health_only:
            _generate(server.health_port, None)
        assert health_only.value.code() == grpc.StatusCode.UNIMPLEMENTED
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.log.read_text()


def test_mutual_tls_refuses_clients_without_a_certificate(tmp_path: Path) -> None:
    rendered = render_with_components(_OVERLAY, ["components/mtls"], tmp_path)
    assert _config(rendered)["CVAE_TLS_CLIENT_CA"].endswith("/ca.crt")
    with _tls_server(rendered, tmp_path) as server:
        assert (
            _health(server.health_port, "cvae.v1.Generator")
            == health_pb2.HealthCheckResponse.SERVING
        )
        assert _generate(server.port, _credentials(server.certificates, True)) == [3, 1]
        with pytest.raises(grpc.RpcError) as refused:
            _generate(server.port, _credentials(server.certificates, False))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
