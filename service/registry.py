"""ModelRegistry: the loaded model versions, swapped atomically on reload."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.errors import NotReady, VersionNotFound, brief
from service.runtime import ModelRuntime

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    by_version: dict[str, ModelRuntime] = field(default_factory=dict)
    newest_first: tuple[str, ...] = ()


class ModelRegistry:
    """Versions kept in memory, newest first; a request resolves its version once.

    Each change builds a new snapshot and replaces the old one in a single assignment, so a
    reader sees either the old set or the new one, never a mix. A runtime dropped from the
    registry lives on until the requests holding it finish.
    """

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._snapshot = _Snapshot()

    @property
    def keep(self) -> int:
        """How many versions are kept (ServiceSettings.keep_versions)."""
        return self._keep

    @property
    def versions(self) -> tuple[str, ...]:
        """Loaded versions, newest first."""
        return self._snapshot.newest_first

    @property
    def newest(self) -> ModelRuntime | None:
        snapshot = self._snapshot
        return snapshot.by_version[snapshot.newest_first[0]] if snapshot.newest_first else None

    def resolve(self, version: str) -> ModelRuntime:
        """The runtime for a pinned version, or the newest for ""."""
        snapshot = self._snapshot
        if not snapshot.newest_first:
            raise NotReady("no model version is loaded yet; retry shortly")
        if not version:
            return snapshot.by_version[snapshot.newest_first[0]]
        runtime = snapshot.by_version.get(version)
        if runtime is None:
            raise VersionNotFound(
                f"model_version: {brief(version)} is not loaded; loaded versions: "
                + ", ".join(snapshot.newest_first)
                + " (or empty for the newest)"
            )
        return runtime

    def add(self, runtime: ModelRuntime) -> list[ModelRuntime]:
        """Add (or replace) a version; returns the versions dropped beyond `keep`."""
        by_version = dict(self._snapshot.by_version)
        by_version[runtime.version] = runtime
        return self._replace(by_version)

    def retain(self, versions: Iterable[str]) -> list[ModelRuntime]:
        """Drop loaded versions not in `versions` (e.g. deleted folders), keeping at least one."""
        wanted = set(versions)
        by_version = {v: r for v, r in self._snapshot.by_version.items() if v in wanted}
        if not by_version:
            return []
        return self._replace(by_version)

    def _replace(self, by_version: dict[str, ModelRuntime]) -> list[ModelRuntime]:
        order = sorted(by_version, key=int, reverse=True)
        kept, dropped = order[: self._keep], order[self._keep :]
        removed = [by_version[v] for v in dropped]
        removed += [r for v, r in self._snapshot.by_version.items() if v not in by_version]
        self._snapshot = _Snapshot({v: by_version[v] for v in kept}, tuple(kept))
        return removed
