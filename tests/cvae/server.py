"""Start the real `cvae serve` process on free ports for the client and job tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cvae.client import Client, GeneratorError, RetryPolicy

_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_server(repository: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Launch `cvae serve` (not waiting for it); its output goes to `log`."""
    command = [
        sys.executable,
        "-m",
        "cvae",
        "serve",
        "--model-repository",
        str(repository),
        "--port",
        str(port),
        "--metrics-port",
        str(free_port()),
    ]
    with open(log, "ab") as sink:
        return subprocess.Popen(command, cwd=_ROOT, stdout=sink, stderr=subprocess.STDOUT)


def wait_until_serving(target: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    retry = RetryPolicy(max_attempts=1)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cvae serve exited with {process.returncode}")
        with (
            Client(target, retry=retry, timeout_s=2.0) as client,
            contextlib.suppress(GeneratorError),
        ):
            client.generate([0], seed=0)
            return
        time.sleep(0.1)
    raise TimeoutError(f"cvae serve did not answer on {target} within {timeout_s}s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def running_server(repository: Path, log: Path) -> Iterator[str]:
    """A serving `cvae serve` process; yields its "127.0.0.1:port" target."""
    port = free_port()
    process = start_server(repository, port, log)
    try:
        wait_until_serving(f"127.0.0.1:{port}", process, timeout_s=60)
        yield f"127.0.0.1:{port}"
    finally:
        stop_server(process)
