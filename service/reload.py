"""Hot reload: watch the model repository, load new versions beside the old, swap atomically.

A new version folder is read, checked against its model.json, loaded and warmed up in a thread
while the current version keeps serving; only then is it swapped in. A version that fails, in
any way, is refused on its own (one log line, counted, `cvae_model_refused_info` while it stays
on disk) and tried again only when its files change; the watcher itself never stops.

Each load runs in a daemon thread of its own and is abandoned after `load_timeout` seconds (the
version is refused): no file can hold the reload lock, start-up or a stop signal for longer.

Start-up serves the newest version that loads: newer ones that do not are refused as above, so a
broken newest version does not turn every new replica into a crash loop. Only when no version
loads does start-up fail, with the newest version's error.

A loaded version whose files change (republished under the same number) is read again: when its
model.json says the same, nothing changes; when it describes other files, the new files are
loaded and replace the old ones under that version (a warning says so), so that every replica
serves the bytes on disk. When they do not load, the loaded ones keep serving and the new are
refused. Version folders that disappear are unloaded, as long as one version remains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from modelrepo import ModelRepository, VersionFolder, read_spec
from service.errors import ModelLoadError
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.runtime import ModelRuntime, RuntimeOptions, first_line_of, load_runtime

_LOGGER = logging.getLogger(__name__)
_Result = TypeVar("_Result")
_RUNNING: set[threading.Thread] = set()  # load threads that have not returned yet


class ModelReloader:
    """Keeps the registry in step with the repository."""

    def __init__(
        self,
        repository: ModelRepository,
        registry: ModelRegistry,
        options: RuntimeOptions,
        metrics: ServiceMetrics,
        load_timeout: float = 60.0,
    ) -> None:
        self._repository = repository
        self._registry = registry
        self._options = options
        self._metrics = metrics
        self._load_timeout = load_timeout
        self._refused: dict[str, VersionFolder] = {}
        self._loaded: dict[str, VersionFolder] = {}  # each loaded version's folder as it was
        self._last_scan_error = ""
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    @property
    def refused(self) -> tuple[str, ...]:
        """Versions on disk that failed to load (their files unchanged since), newest first."""
        return tuple(sorted(self._refused, key=int, reverse=True))

    async def load_initial(self, required: bool = True) -> ModelRuntime | None:
        """Load the newest version that loads, and up to keep-1 older ones (best effort).

        Newer versions that fail are refused and logged; when none loads, ModelLoadError with
        the newest version's problem (one line, nothing else logged), or, when not `required`,
        every version is refused (logged, counted; tried again when its files change) and the
        answer is None.
        """
        try:
            versions = await self._call(self._repository.versions, "scan")
        except TimeoutError as error:
            raise ModelLoadError(f"{self._repository.model_dir()}: listing it {error}") from None
        if not versions:
            self._repository.newest()  # raises the "no version folder" error
        failed: list[tuple[VersionFolder, str]] = []
        for index in range(len(versions) - 1, -1, -1):
            folder = versions[index]
            try:
                newest = await self._load(folder)
            except Exception as error:  # every way a version can fail refuses it alone
                failed.append((folder, describe_failure(folder, error)))
                continue
            for refused, message in failed:
                self._refuse(refused, message)
            self._install(newest, folder)
            if failed:
                _LOGGER.error(
                    "serving version %s, not the newest on disk: refused %s",
                    newest.version,
                    ", ".join(refused.version for refused, _ in failed),
                )
            older = versions[max(0, index - (self._registry.keep - 1)) : index]
            for older_folder in reversed(older):
                await self._try_load(older_folder)
            return newest
        if not required:
            for refused, message in failed:
                self._refuse(refused, message)
            return None
        others = [folder.version for folder, _ in failed[1:]]
        suffix = f" (older versions refused too: {', '.join(others)})" if others else ""
        raise ModelLoadError(failed[0][1] + suffix)

    def trigger(self) -> None:
        """Scan now (SIGHUP)."""
        self._wake.set()

    async def watch(self, interval: float) -> None:
        """Scan every `interval` seconds (0: only when triggered) until cancelled; a scan that
        fails is logged and the next one runs as usual."""
        while True:
            try:
                if interval > 0:
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
                else:
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.scan()
            except Exception as error:  # the watcher must outlive anything a scan meets
                _LOGGER.error("repository scan failed, keeping what is loaded: %s", one_line(error))

    async def scan(self) -> None:
        """Load versions newer than the newest loaded one; unload versions whose folder left."""
        async with self._lock:
            try:
                versions = await self._call(self._repository.versions, "scan")
            except (ModelLoadError, OSError, TimeoutError) as error:
                if str(error) != self._last_scan_error:  # once per distinct problem, not per scan
                    _LOGGER.warning("repository scan failed, keeping what is loaded: %s", error)
                    self._last_scan_error = str(error)
                return
            self._last_scan_error = ""
            for folder in versions:
                if folder.version in self._registry.versions:
                    await self._check_republished(folder)
            newest = self._registry.newest
            newest_loaded = int(newest.version) if newest is not None else 0
            for folder in versions[-self._registry.keep :]:
                wanted = int(folder.version) > newest_loaded or folder.version in self._refused
                if wanted and await self._try_load(folder):
                    newest_loaded = max(newest_loaded, int(folder.version))
            on_disk = [folder.version for folder in versions]
            for version in [v for v in self._refused if v not in on_disk]:
                cleared = self._refused.pop(version)
                self._metrics.refusal_cleared(_model_of(cleared), version)
            for runtime in self._registry.retain(on_disk):
                self._loaded.pop(runtime.version, None)
                self._unloaded(runtime, "its folder is gone")
            self._publish_served()

    async def _try_load(self, folder: VersionFolder) -> bool:
        if folder.version in self._registry.versions:
            return False
        refused = self._refused.get(folder.version)
        if refused is not None and refused.fingerprint == folder.fingerprint:
            return False  # unchanged since it was refused
        try:
            runtime = await self._load(folder)
        except Exception as error:  # every way a version can fail refuses it alone
            self._refuse(folder, describe_failure(folder, error))
            return False
        self._install(runtime, folder)
        return True

    async def _check_republished(self, folder: VersionFolder) -> None:
        """A loaded version whose files changed: the same model.json, or new files to serve."""
        loaded = self._loaded.get(folder.version)
        refused = self._refused.get(folder.version)
        if loaded is None or loaded.fingerprint == folder.fingerprint:
            return
        if refused is not None and refused.fingerprint == folder.fingerprint:
            return
        current = self._registry.resolve(folder.version)
        try:
            spec = await self._call(
                lambda: read_spec(folder.path, self._options.max_model_bytes), folder.version
            )
            if spec.document == current.spec.document:  # same files (their sha256s say so)
                self._loaded[folder.version] = folder
                if self._refused.pop(folder.version, None) is not None:  # restored as loaded
                    self._metrics.refusal_cleared(_model_of(folder), folder.version)
                return
            runtime = await self._load(folder)
        except Exception as error:
            message = describe_failure(folder, error)
            self._refuse(folder, f"republished with other files that cannot be served: {message}")
            _LOGGER.error("still serving the files version %s was loaded from", folder.version)
            return
        _LOGGER.warning(
            "version %s was republished with other files (onnx_sha256 %s, was %s): serving "
            "the new files; a published version should never change",
            folder.version,
            runtime.spec.onnx_sha256[:12],
            current.spec.onnx_sha256[:12],
        )
        self._install(runtime, folder)

    async def _load(self, folder: VersionFolder) -> ModelRuntime:
        return await self._call(lambda: load_runtime(folder.path, self._options), folder.version)

    async def _call(self, function: Callable[[], _Result], what: str) -> _Result:
        """`function()` in a daemon thread, abandoned after the load timeout (TimeoutError)."""
        try:
            return await call_abandonable(function, self._load_timeout, f"load-{what}")
        except TimeoutError:
            raise TimeoutError(
                f"did not finish within {self._load_timeout:g} s (--model-load-timeout-s); "
                "abandoned (its thread, and the CPU it uses, stay until the process exits)"
            ) from None

    def _refuse(self, folder: VersionFolder, message: str) -> None:
        self._refused[folder.version] = folder
        self._metrics.model_refused(_model_of(folder), folder.version)
        _LOGGER.error(
            "refused model version %s: %s (model %s)", folder.version, message, _model_of(folder)
        )

    def _install(self, runtime: ModelRuntime, folder: VersionFolder) -> None:
        dropped = self._registry.add(runtime)
        self._loaded[runtime.version] = folder
        if self._refused.pop(runtime.version, None) is not None:
            self._metrics.refusal_cleared(_model_of(folder), runtime.version)
        self._metrics.model_loaded(runtime.name, runtime.version)
        newest = self._registry.newest
        _LOGGER.info(
            "loaded %s version %s in %.3f s; serving version %s (loaded: %s)",
            runtime.name,
            runtime.version,
            runtime.load_seconds,
            newest.version if newest is not None else "none",
            ", ".join(self._registry.versions),
        )
        for old in dropped:
            self._loaded.pop(old.version, None)
            self._unloaded(old, f"only the newest {self._registry.keep} are kept")
        self._publish_served()

    def _publish_served(self) -> None:
        newest = self._registry.newest
        if newest is not None:
            self._metrics.model_served(newest.name, newest.version)

    def _unloaded(self, runtime: ModelRuntime, reason: str) -> None:
        self._metrics.model_unloaded(runtime.name, runtime.version)
        _LOGGER.info("unloaded %s version %s: %s", runtime.name, runtime.version, reason)


def _model_of(folder: VersionFolder) -> str:
    """The model a version folder belongs to: `<repository>/<model>/<version>/`."""
    return folder.path.parent.name


def describe_failure(folder: VersionFolder, error: Exception) -> str:
    """One line: a ModelLoadError names its file already; anything else gets the folder."""
    if isinstance(error, ModelLoadError):
        return one_line(error)
    if isinstance(error, TimeoutError):
        return f"{folder.path}: loading {one_line(error)}"
    return f"{folder.path}: cannot be loaded ({type(error).__name__}: {one_line(error)})"


def one_line(error: BaseException, limit: int = 500) -> str:
    text = first_line_of(error) if isinstance(error, Exception) else repr(error)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def call_abandonable(function: Callable[[], _Result], timeout: float, name: str) -> _Result:
    """`function()` in a new daemon thread; TimeoutError after `timeout` s, the thread left to
    finish (or hang) on its own: the process can still stop, since nothing joins it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_Result] = loop.create_future()
    started = time.monotonic()

    def settle(result: _Result | None, error: BaseException | None) -> None:
        if future.done():  # abandoned: it timed out or was cancelled
            seconds = time.monotonic() - started
            _LOGGER.info("%s finished after %.1f s, its result dropped", name, seconds)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = function()
        except BaseException as error:  # handed to the waiting coroutine
            outcome: tuple[_Result | None, BaseException | None] = (None, error)
        else:
            outcome = (result, None)
        finally:
            _RUNNING.discard(threading.current_thread())
        with contextlib.suppress(RuntimeError):  # the event loop is gone: no one waits
            loop.call_soon_threadsafe(settle, *outcome)

    thread = threading.Thread(target=work, name=name, daemon=True)
    _RUNNING.add(thread)
    thread.start()
    return await asyncio.wait_for(future, timeout)


def exit_past_abandoned_loads(code: int) -> int:
    """`code`, or exit with it at once when an abandoned load still runs: onnxruntime aborts
    the process (SIGABRT) when the interpreter finalizes under a thread inside a session, so
    the process leaves without finalizing (logs and standard streams flushed first)."""
    if not any(thread.is_alive() for thread in list(_RUNNING)):
        return code
    if code == 0:  # a failed start said so in its one line already
        _LOGGER.warning("exiting with %d abandoned model load(s) still running", len(_RUNNING))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
