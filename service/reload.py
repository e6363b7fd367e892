"""Hot reload: watch the model repository, load new versions beside the old, swap atomically.

A new version folder is read, checked against its model.json, loaded and warmed up in a thread
while the current version keeps serving; only then is it swapped in. A version that fails is
refused (logged, counted) and tried again only when its files change. Version folders that
disappear are unloaded, as long as one version remains.
"""

from __future__ import annotations

import asyncio
import logging

from modelrepo import ModelRepository, VersionFolder
from service.errors import ModelLoadError
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.runtime import ModelRuntime, RuntimeOptions, load_runtime

_LOGGER = logging.getLogger(__name__)


class ModelReloader:
    """Keeps the registry in step with the repository."""

    def __init__(
        self,
        repository: ModelRepository,
        registry: ModelRegistry,
        options: RuntimeOptions,
        metrics: ServiceMetrics,
    ) -> None:
        self._repository = repository
        self._registry = registry
        self._options = options
        self._metrics = metrics
        self._refused: dict[str, VersionFolder] = {}
        self._last_scan_error = ""
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def load_initial(self) -> ModelRuntime:
        """Load the newest version (it must load) and up to keep-1 older ones (best effort)."""
        loop = asyncio.get_running_loop()
        versions = await loop.run_in_executor(None, self._repository.versions)
        if not versions:
            self._repository.newest()  # raises the "no version folder" error
        newest = await loop.run_in_executor(None, load_runtime, versions[-1].path, self._options)
        self._install(newest)
        for folder in reversed(versions[-self._registry.keep : -1]):
            await self._try_load(folder)
        return newest

    def trigger(self) -> None:
        """Scan now (SIGHUP)."""
        self._wake.set()

    async def watch(self, interval: float) -> None:
        """Scan every `interval` seconds (0: only when triggered) until cancelled."""
        while True:
            try:
                if interval > 0:
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
                else:
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.scan()

    async def scan(self) -> None:
        """Load versions newer than the newest loaded one; unload versions whose folder left."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                versions = await loop.run_in_executor(None, self._repository.versions)
            except (ModelLoadError, OSError) as error:
                if str(error) != self._last_scan_error:  # once per distinct problem, not per scan
                    _LOGGER.warning("repository scan failed, keeping what is loaded: %s", error)
                    self._last_scan_error = str(error)
                return
            self._last_scan_error = ""
            newest = self._registry.newest
            newest_loaded = int(newest.version) if newest is not None else 0
            for folder in versions[-self._registry.keep :]:
                wanted = int(folder.version) > newest_loaded or folder.version in self._refused
                if wanted and await self._try_load(folder):
                    newest_loaded = max(newest_loaded, int(folder.version))
            on_disk = [folder.version for folder in versions]
            for runtime in self._registry.retain(on_disk):
                self._unloaded(runtime, "its folder is gone")
            self._publish_served()

    async def _try_load(self, folder: VersionFolder) -> bool:
        if folder.version in self._registry.versions:
            return False
        refused = self._refused.get(folder.version)
        if refused is not None and refused.fingerprint == folder.fingerprint:
            return False  # unchanged since it was refused
        loop = asyncio.get_running_loop()
        try:
            runtime = await loop.run_in_executor(None, load_runtime, folder.path, self._options)
        except ModelLoadError as error:
            self._refused[folder.version] = folder
            self._metrics.model_refused()
            _LOGGER.error("refused model version %s: %s", folder.version, error)
            return False
        self._refused.pop(folder.version, None)
        self._install(runtime)
        return True

    def _install(self, runtime: ModelRuntime) -> None:
        dropped = self._registry.add(runtime)
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
            self._unloaded(old, f"only the newest {self._registry.keep} are kept")
        self._publish_served()

    def _publish_served(self) -> None:
        newest = self._registry.newest
        if newest is not None:
            self._metrics.model_served(newest.name, newest.version)

    def _unloaded(self, runtime: ModelRuntime, reason: str) -> None:
        self._metrics.model_unloaded(runtime.name, runtime.version)
        _LOGGER.info("unloaded %s version %s: %s", runtime.name, runtime.version, reason)
