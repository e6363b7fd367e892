"""Run a real `cvae serve` process on free ports and talk to it: health, Generate, /metrics."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import free_port
from cvae.v1 import generator_pb2, generator_pb2_grpc

HEALTH_SERVICE = "cvae.v1.Generator"


@dataclass(frozen=True)
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def health(self, service: str = HEALTH_SERVICE) -> int:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service)
            return int(stub.Check(request, timeout=2).status)

    def generate(self, labels: Sequence[int], seed: int = 0) -> generator_pb2.GenerateResponse:
        with grpc.insecure_channel(self.target) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            request = generator_pb2.GenerateRequest(labels=list(labels), seed=seed)
            return stub.Generate(request, timeout=30)

    def scrape(self) -> dict[str, list[dict[str, str]]]:
        """Sample name -> the label sets of its series, from the live /metrics page."""
        return {
            name: [labels for labels, _ in series] for name, series in self.scrape_values().items()
        }

    def scrape_values(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Sample name -> (label set, value) of each of its series, from the live /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples


def _wait_until_serving(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {server.process.returncode}:\n{server.log.read_text()}"
            )
        with contextlib.suppress(grpc.RpcError):
            if server.health() == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.2)
    raise TimeoutError(f"no SERVING within {timeout_s}s:\n{server.log.read_text()}")


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    environ: Mapping[str, str],
    log: Path,
    cwd: Path,
    timeout_s: float = 90,
) -> Iterator[RunningServer]:
    """Start `command` with CVAE_PORT/CVAE_METRICS_PORT on free ports; stop it with SIGTERM."""
    port, metrics_port = free_port(), free_port()
    env = {**environ, "CVAE_PORT": str(port), "CVAE_METRICS_PORT": str(metrics_port)}
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = RunningServer(process, port, metrics_port, log)
    try:
        _wait_until_serving(server, timeout_s)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
