"""Run the real `cvae serve` in a subprocess on a free port, for end-to-end tests.

Reusable: `with ServerProcess(repository) as server: server.stub.Generate(...)`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.servers import ServerError, free_port
from bench.servers import ServerProcess as ChildProcess
from cvae.v1 import generator_pb2_grpc as pb_grpc

_ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAME = "cvae.v1.Generator"
__all__ = ["SERVICE_NAME", "ServerProcess", "free_port", "run_serve"]


class ServerProcess:
    """`python -m cvae serve --model-repository REPO --port P --metrics-port M ARGS...`, run by
    the bench's process helper (its own process group, its log in a file)."""

    def __init__(
        self,
        repository: Path,
        *args: str,
        env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metrics: bool = True,
    ) -> None:
        self.repository = repository
        self.port = free_port()
        self.metrics_port = free_port() if metrics else 0
        self.args = list(args)
        self.env = {"PYTHONUNBUFFERED": "1", **(env or {})}
        self.credentials = credentials
        self._folder = tempfile.TemporaryDirectory(prefix="cvae-serve-")  # removed in __exit__
        self._child: ChildProcess | None = None
        self._channel: grpc.Channel | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self._child is None else self._child.process

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "cvae", "serve",
            "--model-repository", str(self.repository),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--metrics-port", str(self.metrics_port),
            *self.args,
        ]  # fmt: skip

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 60.0) -> ServerProcess:
        log_path = Path(self._folder.name) / "serve.log"
        self._child = ChildProcess("cvae serve", self.command, log_path, self.env, cwd=_ROOT)
        self._child.start()
        if wait:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        assert self._child is not None

        def serving() -> bool:
            return bool(self.health() == health_pb2.HealthCheckResponse.SERVING)

        try:
            self._child.wait_ready(serving, timeout)
        except ServerError as error:
            raise AssertionError(f"server not SERVING: {error}") from None

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = self.new_channel()
        return self._channel

    def new_channel(self, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        credentials = credentials or self.credentials
        options = [("grpc.ssl_target_name_override", "localhost")] if credentials else []
        if credentials is not None:
            return grpc.secure_channel(self.address, credentials, options=options)
        return grpc.insecure_channel(self.address)

    @property
    def stub(self) -> pb_grpc.GeneratorStub:
        return pb_grpc.GeneratorStub(self.channel())

    def health(self, service: str = "", timeout: float = 2.0) -> Any:
        stub = health_pb2_grpc.HealthStub(self.channel())
        request = health_pb2.HealthCheckRequest(service=service)
        return stub.Check(request, timeout=timeout).status

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample, e.g. metric("cvae_requests_total", 'code="OK",...')."""
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in self.scrape().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == wanted:
                return float(value)
        return 0.0

    def signal(self, number: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return "" if self._child is None else self._child.log_tail(characters=1 << 30)

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._child is not None:
            self._child.stop()

    def __enter__(self) -> ServerProcess:
        if self._child is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._folder.cleanup()


def run_serve(
    repository: Path, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `cvae serve` expecting it to exit by itself (a start failure)."""
    command = [
        sys.executable, "-m", "cvae", "serve", "--model-repository", str(repository),
        "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", "0", *args,
    ]  # fmt: skip
    return subprocess.run(
        command,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
