"""Start and stop the servers under test as child processes, and know when they are ready."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelrepo import ModelSpec
from service.settings import ServiceSettings

_LOGGER = logging.getLogger(__name__)
_SHIPPED = ServiceSettings()  # the defaults of `cvae serve`, which ServiceConfig starts from
GENERATOR_SERVICE = "cvae.v1.Generator"


class ServerError(RuntimeError):
    """A server did not start, or died; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A child process with its log in a file, in its own process group (its workers too);
    stopped with `stop_signal` to the group, then killed. The one process helper of the bench
    and the tests (tests/service/serverproc.py builds `cvae serve` on it)."""

    name: str
    args: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None
    cwd: Path | None = None
    inherit_env: bool = True
    """False: `env` is the whole environment (a test of what an image sets)."""

    @property
    def pid(self) -> int:
        """The started process's id, also its process group's (it starts a session of its own)."""
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        _LOGGER.info("starting %s: %s", self.name, " ".join(self.args))
        self.process = subprocess.Popen(
            list(self.args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env} if self.inherit_env else dict(self.env),
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float) -> float:
        """Poll `ready` until true; the seconds it took. Raises if the process exits or stalls."""
        assert self.process is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if ready():
                    return time.monotonic() - started
            time.sleep(0.05)
        raise ServerError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("%s ignored signal %d; killing it", self.name, self.stop_signal)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)


@contextlib.contextmanager
def running(server: ServerProcess, ready: Callable[[], bool], timeout_s: float) -> Iterator[float]:
    """Start, wait until ready (yields the seconds that took), and always stop."""
    server.start()
    try:
        yield server.wait_ready(ready, timeout_s)
    finally:
        server.stop()


def grpc_serving(port: int, service: str = GENERATOR_SERVICE) -> Callable[[], bool]:
    def ready() -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return ready


def logged_serving(log_path: Path, processes: int) -> Callable[[], bool]:
    """True once `processes` SERVING lines are in the log: each worker of `--workers` logs one,
    and a health check reaches only the worker its connection landed on."""

    def ready() -> bool:
        text = log_path.read_text(errors="replace")
        return text.count("service.server: SERVING ") >= processes

    return ready


def http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except urllib.error.URLError:
            return False

    return ready


@dataclass(frozen=True)
class ServiceConfig:
    """One configuration of `cvae serve` under test."""

    batching: bool = _SHIPPED.batching
    max_batch: int = _SHIPPED.max_batch
    max_delay_ms: float = _SHIPPED.max_delay_ms
    intra_op_threads: int = 0
    """0 leaves the service's own default (the CPUs the process may use)."""
    decoder_slots: int = 0
    """Decoder calls that may run at once (`--decoder-slots`); 0 leaves the service's default."""
    workers: int = 1
    """Server processes sharing the port (`--workers`)."""
    extra_args: tuple[str, ...] = ()

    def label(self) -> str:
        parts = [
            f"batching ≤{self.max_batch} images, ≤{self.max_delay_ms:g} ms"
            if self.batching
            else "batching off"
        ]
        if self.intra_op_threads:
            plural = "s" if self.intra_op_threads > 1 else ""
            parts.append(f"{self.intra_op_threads} ORT thread{plural}")
        if self.decoder_slots:
            plural = "s" if self.decoder_slots > 1 else ""
            parts.append(f"{self.decoder_slots} decoder slot{plural}")
        if self.workers > 1:
            parts.append(f"{self.workers} workers")
        return ", ".join(parts)


def cvae_service(
    model: ModelSpec, config: ServiceConfig, log_path: Path, http_port: int = 0
) -> tuple[ServerProcess, int, int]:
    """`cvae serve` on free ports: (process, gRPC port, metrics port); with `http_port`, the
    Open Inference Protocol's HTTP endpoint there too."""
    port, metrics_port = free_port(), free_port()
    args = [
        sys.executable, "-m", "cvae", "serve",
        "--model-repository", str(model.folder.parent.parent),
        "--model-name", model.folder.parent.name,
        "--port", str(port),
        "--metrics-port", str(metrics_port),
        "--host", "127.0.0.1",
        "--max-batch", str(config.max_batch),
        "--max-delay-ms", str(config.max_delay_ms),
        "--batching", "true" if config.batching else "false",
        "--reload-interval-s", "0",
    ]  # fmt: skip
    if config.intra_op_threads:
        args += ["--intra-op-threads", str(config.intra_op_threads)]
    if config.decoder_slots:
        args += ["--decoder-slots", str(config.decoder_slots)]
    if config.workers > 1:
        args += ["--workers", str(config.workers)]
    if http_port:
        args += ["--http-port", str(http_port)]
    args += config.extra_args
    return ServerProcess("cvae serve", args, log_path), port, metrics_port
