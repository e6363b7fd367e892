"""The real serving image (deploy/Dockerfile) under podman, run as Kubernetes runs the pod:
read-only root, /tmp a tmpfs, every capability dropped, no new privileges, non-root. It turns
SERVING, generates the bytes onnxruntime gives for the shipped model, serves /metrics, has no
torch, and exits 0 on SIGTERM within the grace period. Its size is printed (`make image-test`)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from modelrepo import newest_spec
from service.codec import to_uint8
from service.sampler import LatentSampler
from tests.service.serverproc import free_port

pytestmark = pytest.mark.timeout(2400)
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "podman" / "image.sh"
IMAGE = os.environ.get("IMAGE", "localhost/cvae-mnist-service:dev")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
_GRACE_S = 10  # the default --grace-period (the image sets no CVAE_GRACE_PERIOD)


def _podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(
        ["sh", str(SCRIPT), "build"], cwd=ROOT, capture_output=True, text=True, timeout=2000,
        env={**os.environ, "IMAGE": IMAGE},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    size = int(_podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB")  # what make image-test reports
    return IMAGE


class Container:
    def __init__(self, name: str, port: int, metrics_port: int) -> None:
        self.name, self.port, self.metrics_port = name, port, metrics_port
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(
            health_pb2.HealthCheckRequest(service="cvae.v1.Generator"), timeout=5
        ).status

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return _podman("exec", self.name, *command)


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    port, metrics_port = free_port(), free_port()
    name = f"cvae-image-test-{os.getpid()}"
    started = subprocess.run(
        ["sh", str(SCRIPT), "run", "-d", "--name", name,
         "-e", f"CVAE_PORT={port}", "-e", f"CVAE_METRICS_PORT={metrics_port}", image],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    running = Container(name, port, metrics_port)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if running.health() == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            state = _podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", _podman("logs", name).stderr
            assert time.monotonic() < deadline, _podman("logs", name).stderr
            time.sleep(0.5)
        yield running
    finally:
        running.channel.close()
        _podman("rm", "--force", name)


def test_it_generates_the_shipped_models_bytes(container: Container) -> None:
    stub = pb_grpc.GeneratorStub(container.channel)
    labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    answer = stub.Generate(pb.GenerateRequest(labels=labels, seed=11), timeout=60)
    newest = newest_spec(ROOT / "models", "cvae-mnist").version  # what the image must serve
    assert answer.model_version == newest
    model = ROOT / "models" / "cvae-mnist" / newest / "model.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    latents = LatentSampler(16, 11, 1.0).take(len(labels))
    (images,) = session.run(None, {"z": latents, "label": np.array(labels, np.int64)})
    assert answer.images.data == to_uint8(images).tobytes()
    # The image bakes in both shipped models; CVAE_MODEL_NAME makes cvae-mnist the default.
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert (info.default_model, list(info.available_models)) == (
        "cvae-mnist",
        ["cvae-mnist", "cvae-mnist-fast"],
    )
    fast = stub.Generate(
        pb.GenerateRequest(labels=labels, model_name="cvae-mnist-fast"), timeout=60
    )
    assert (fast.model_name, len(fast.images.data)) == ("cvae-mnist-fast", len(labels) * 28 * 28)


def test_it_serves_metrics(container: Container) -> None:
    url = f"http://127.0.0.1:{container.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    newest = newest_spec(ROOT / "models", "cvae-mnist").version  # the default of its models
    assert f'cvae_served_model_info{{name="cvae-mnist",version="{newest}"}} 1.0' in text
    assert 'cvae_requests_total{code="OK",method="Generate",protocol="cvae.v1"}' in text


def test_it_runs_as_non_root_on_a_read_only_root_without_torch(container: Container) -> None:
    assert container.exec("id", "-u").stdout.strip() == "10001"
    assert container.exec("sh", "-c", "echo x > /opt/cvae/x").returncode != 0
    assert container.exec("sh", "-c", "echo x > /tmp/x").returncode == 0  # the tmpfs
    no_torch = container.exec("python", "-c", "import torch")
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    capabilities = container.exec("sh", "-c", "grep CapEff /proc/self/status").stdout
    assert capabilities.split()[-1] == "0000000000000000"


def test_sigterm_drains_and_exits_zero_within_the_grace_period(container: Container) -> None:
    started = time.monotonic()
    assert _podman("kill", "--signal", "TERM", container.name).returncode == 0
    waited = _podman("wait", container.name, timeout=_GRACE_S + 30)
    seconds = time.monotonic() - started
    assert waited.stdout.strip() == "0", _podman("logs", container.name).stderr
    assert seconds < _GRACE_S, seconds
