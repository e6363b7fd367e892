"""`cvae serve --workers N`: a supervisor and N server processes sharing one port (SO_REUSEPORT).

One Python process is bound by its GIL and its one event loop; N processes each run the whole
single-process server (service/server.py: own event loop, batcher, onnxruntime session, health)
on the same port, and the kernel spreads connections over them. The supervisor:
- checks the repository (a missing or corrupt one fails here, before any worker starts);
- reserves the port with a bound, not listening SO_REUSEPORT socket (port 0: picks one);
- serves one /metrics for all workers (service/worker_metrics.py);
- starts the workers with multiprocessing's "spawn" (fresh interpreters: it never imports grpc,
  which does not survive fork, grpc/grpc#43157), forwards SIGTERM, SIGINT and SIGHUP to them, and
  exits 0 once all stopped cleanly. A worker that dies stops the others and the supervisor exits
  1, so that Kubernetes restarts the pod. A killed supervisor takes its workers with it
  (PR_SET_PDEATHSIG: they drain as on SIGTERM).
- watches that each worker is alive, not merely present: every worker's event loop writes the
  time into a shared value each second (`_beat`), and a worker whose beat is older than
  `--worker-liveness-s` (SIGSTOPped, deadlocked, its loop stuck) is killed and handled as dead.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

from modelrepo import newest_readable_spec
from service.settings import ServiceSettings

_LOGGER = logging.getLogger(__name__)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_KILL_MARGIN_S = 5.0  # past the grace period, a worker that has not exited is killed
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_BEAT_S = 1.0  # how often a worker's event loop writes its heartbeat


class SupervisorError(Exception):
    """The workers cannot start, or one failed; the message names the port, file or worker."""


def supervise(settings: ServiceSettings) -> int:
    """Run `settings.workers` servers on one port until SIGTERM/SIGINT; 0 after a clean stop."""
    # Some version must read (the workers serve the newest that loads); else one error line.
    newest_readable_spec(settings.model_repository, settings.model_name)
    with reserve_port(settings.host, settings.port) as holder, _metrics_folder() as folder:
        port = int(holder.getsockname()[1])
        pool = WorkerPool(dataclasses.replace(settings, port=port, metrics_port=0), folder)
        metrics_http = _serve_metrics(settings, folder, pool) if settings.metrics_port else None
        try:
            _LOGGER.debug("starting %d workers on %s:%d", settings.workers, settings.host, port)
            return pool.run()
        finally:
            if metrics_http is not None:
                metrics_http.shutdown()


@contextlib.contextmanager
def reserve_port(host: str, port: int) -> Iterator[socket.socket]:
    """A bound SO_REUSEPORT socket that keeps `port` (0: a free one) for the workers to share."""
    address = f"{host}:{port}"
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        holder = socket.socket(family, kind, proto)
    except OSError as error:
        raise SupervisorError(f"--port {port}: cannot listen on {address} ({error})") from None
    with holder:
        try:
            # SO_REUSEADDR as gRPC's own listeners set it: connections of a server that just
            # stopped on this port (TIME_WAIT) must not keep the port for a minute.
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(where)
        except OSError as error:
            raise SupervisorError(
                f"--port {port}: cannot listen on {address} ({error.strerror})"
            ) from None
        yield holder


@contextlib.contextmanager
def _metrics_folder() -> Iterator[Path]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers, removed at exit."""
    from service.worker_metrics import MULTIPROC_DIR_ENV

    folder = Path(tempfile.mkdtemp(prefix="cvae-metrics-"))
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = str(folder)  # spawned workers inherit it
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


def _serve_metrics(settings: ServiceSettings, folder: Path, pool: WorkerPool) -> Any:
    from service import worker_metrics

    registry = worker_metrics.build_supervisor_registry(folder, pool.live_pids)
    try:
        return worker_metrics.serve(registry, settings.host.strip("[]"), settings.metrics_port)
    except OSError as error:
        raise SupervisorError(
            f"--metrics-port {settings.metrics_port}: cannot listen ({error})"
        ) from None


@dataclasses.dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing's SpawnProcess
    report: Connection  # a start failure's message comes back here
    beat: Any  # multiprocessing Value("d"): CLOCK_MONOTONIC of the worker loop's last beat
    done: bool = False
    hung: bool = False


class WorkerPool:
    """Starts the workers, forwards signals, watches for exits, and stops them all."""

    def __init__(self, settings: ServiceSettings, metrics_folder: Path) -> None:
        self.settings = settings
        self.metrics_folder = metrics_folder
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._signals: list[int] = []
        self._stop_deadline: float | None = None
        self._failed = False
        self._start_failure: str | None = None

    def live_pids(self) -> dict[int, int]:
        return {w.index: w.process.pid for w in self._workers if not w.done and w.process.pid}

    def run(self) -> int:
        waker, wake_writer = socket.socketpair()
        waker.setblocking(False)
        wake_writer.setblocking(False)
        previous_fd = signal.set_wakeup_fd(wake_writer.fileno())
        handled = (*_STOP_SIGNALS, signal.SIGHUP)
        previous = {number: signal.signal(number, self._on_signal) for number in handled}
        try:
            for index in range(self.settings.workers):
                self._start(index)
            self._watch(waker)
        finally:
            self._stop_all(force=True)
            for number, handler in previous.items():
                signal.signal(number, handler)
            signal.set_wakeup_fd(previous_fd)
            waker.close()
            wake_writer.close()
        if self._start_failure is not None:
            raise SupervisorError(self._start_failure)
        if self._failed:
            return 1
        _LOGGER.info("all %d workers stopped", len(self._workers))
        return 0

    def _start(self, index: int) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        beat = self._context.Value("d", 0.0, lock=False)  # 0: not beating yet (starting)
        process = self._context.Process(
            target=run_worker,
            args=(self.settings, index, os.getpid(), sender, beat),
            name=f"cvae-serve-worker-{index}",
        )
        process.start()
        sender.close()
        self._workers.append(_Worker(index, process, receiver, beat))

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        self._signals.append(number)  # handled by _watch, outside the signal handler

    def _watch(self, waker: socket.socket) -> None:
        while any(not worker.done for worker in self._workers):
            timeout = 1.0
            if self._stop_deadline is not None:
                timeout = max(0.0, min(timeout, self._stop_deadline - time.monotonic()))
            sentinels = [w.process.sentinel for w in self._workers if not w.done]
            wait([*sentinels, waker], timeout)
            with contextlib.suppress(BlockingIOError):
                while waker.recv(64):
                    pass
            while self._signals:
                self._forward(self._signals.pop(0))
            self._kill_hung()
            for worker in self._workers:
                if not worker.done and worker.process.exitcode is not None:
                    self._reap(worker)
            if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                _LOGGER.error("workers still running past the grace period: killing them")
                self._failed = True
                self._stop_all(force=True)

    def _kill_hung(self) -> None:
        """SIGKILL every worker whose loop has not beaten for --worker-liveness-s; `_reap` then
        handles it as a worker that died."""
        now = time.monotonic()
        for worker in self._workers:
            beat = worker.beat.value
            if worker.done or worker.hung or not beat:
                continue
            silent = now - beat
            if silent > self.settings.worker_liveness_s:
                worker.hung = True
                _LOGGER.error(
                    "worker %d (pid %d) has not answered for %.0f s (--worker-liveness-s %g): "
                    "killing it", worker.index, worker.process.pid, silent,
                    self.settings.worker_liveness_s,
                )  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGKILL)

    def _forward(self, number: int) -> None:
        if number in _STOP_SIGNALS and self._stop_deadline is None:
            _LOGGER.info("stop signal: stopping %d workers", len(self.live_pids()))
            self._begin_stop()
        for worker in self._workers:
            if not worker.done:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, number)

    def _begin_stop(self) -> None:
        if self._stop_deadline is None:
            # The workers' own drain takes at most the grace period (plus a settling moment).
            self._stop_deadline = time.monotonic() + self.settings.grace_period_s + _KILL_MARGIN_S

    def _reap(self, worker: _Worker) -> None:
        worker.done = True
        code = worker.process.exitcode
        worker.process.join()
        from service.worker_metrics import mark_process_dead

        mark_process_dead(worker.process.pid, str(self.metrics_folder))  # its live gauges go
        message = _received(worker.report)
        worker.report.close()
        if message is not None:  # it could not start: the first such message is the answer
            _LOGGER.debug("worker %d could not start: %s", worker.index, message)
            self._start_failure = self._start_failure or message
        elif code != 0 or self._stop_deadline is None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            _LOGGER.error("worker %d (pid %d) %s", worker.index, worker.process.pid, how)
        else:
            _LOGGER.debug("worker %d (pid %d) stopped", worker.index, worker.process.pid)
            return
        self._failed = True
        if self._stop_deadline is None:
            self._begin_stop()
            self._stop_all(force=False)

    def _stop_all(self, force: bool) -> None:
        """SIGTERM (or, with `force`, SIGKILL) every worker still running; reap them if forced."""
        for worker in self._workers:
            if not worker.done and worker.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGKILL if force else signal.SIGTERM)
        if force:
            for worker in self._workers:
                if not worker.done:
                    worker.process.join()
                    worker.done = True


def _received(report: Connection) -> str | None:
    try:
        if report.poll():
            return str(report.recv())
    except (EOFError, OSError):
        pass
    return None


def run_worker(
    settings: ServiceSettings, index: int, supervisor_pid: int, report: Connection, beat: Any
) -> None:
    """One worker process: the single-process server on the shared port (exit code = its)."""
    # Until the server installs its handlers: a stop before then ends the worker quietly, and
    # a reload signal must not kill it.
    for number in _STOP_SIGNALS:
        signal.signal(number, _exit_now)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.setpgid(0, 0)  # Ctrl-C reaches the supervisor alone, which forwards one stop signal
    _stop_with_parent(supervisor_pid)

    from service.memory import tune_malloc

    tune_malloc()
    import asyncio

    from service.errors import ModelLoadError
    from service.logs import configure_logging
    from service.server import StartupError

    configure_logging(settings.log_format, settings.log_level, worker=index)
    from service.reload import exit_past_abandoned_loads

    try:
        code = asyncio.run(_serve_beating(settings, beat))
    except (ModelLoadError, StartupError) as error:
        report.send(str(error))
        code = 1
    finally:
        report.close()
    sys.exit(exit_past_abandoned_loads(code))


async def _serve_beating(settings: ServiceSettings, beat: Any) -> int:
    """`serve`, with this event loop writing its heartbeat into `beat` every second."""
    import asyncio

    from service.server import serve

    async def beating() -> None:
        while True:
            beat.value = time.monotonic()
            await asyncio.sleep(_BEAT_S)

    heart = asyncio.ensure_future(beating())
    try:
        return await serve(settings)
    finally:
        heart.cancel()


def _exit_now(_number: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _stop_with_parent(supervisor_pid: int) -> None:
    """Get SIGTERM when the supervisor dies, even by SIGKILL (Linux); exit if it already has."""
    with contextlib.suppress(OSError, AttributeError):  # no prctl: not Linux
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor_pid:
        raise SystemExit(0)
