"""Models and versions on disk: `<root>/<name>/<version>/`, versions numbered 1, 2, ...

A version folder's name is a positive integer in ASCII digits without a leading zero, at most
MAX_VERSION_DIGITS of them; anything else beside it (hidden staging folders of a publish in
progress, notes, a folder named "²" or "٣") is not a version. Model names are safe file names.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from modelrepo.errors import ModelRepositoryError

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_VERSION_DIGITS = 18  # every version fits an int64 (and sorts as an integer)
# ASCII only: str.isdigit() also takes "²" (int() fails) and "٣" (int() reads 3).
_VERSION_PATTERN = re.compile(rf"[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}")


@dataclass(frozen=True)
class VersionFolder:
    """One <name>/<version> folder, and a fingerprint that changes when its files change."""

    version: str
    path: Path
    fingerprint: tuple[tuple[str, int, int, int], ...]


class ModelRepository:
    """The `<root>/<name>/<version>/` folders of one model name (of the only model if none)."""

    def __init__(self, root: Path, model_name: str = "") -> None:
        self._root = root
        self._model_name = model_name

    def model_names(self) -> list[str]:
        """Every model folder in the repository, sorted."""
        if not self._root.is_dir():
            raise ModelRepositoryError(f"{self._root}: model repository folder does not exist")
        try:
            return sorted(p.name for p in self._root.iterdir() if p.is_dir() and not _hidden(p))
        except OSError as error:
            raise ModelRepositoryError(f"{self._root}: cannot be listed ({error})") from None

    def model_dir(self) -> Path:
        """The <name> folder; with no name given the repository must hold exactly one."""
        if self._model_name:
            if not self._root.is_dir():
                raise ModelRepositoryError(f"{self._root}: model repository folder does not exist")
            path = self._root / self._model_name
            if not path.is_dir():
                raise ModelRepositoryError(f"{path}: model folder does not exist")
            return path
        names = self.model_names()
        if not names:
            raise ModelRepositoryError(f"{self._root}: model repository holds no model folder")
        if len(names) > 1:
            listed = ", ".join(names)
            raise ModelRepositoryError(
                f"{self._root}: several models ({listed}); pass --model-name"
            )
        return self._root / names[0]

    def versions(self) -> list[VersionFolder]:
        """Version folders, oldest first."""
        model_dir = self.model_dir()
        try:
            found = [
                VersionFolder(path.name, path, _fingerprint(path))
                for path in model_dir.iterdir()
                if _version_number(path) is not None
            ]
        except OSError as error:  # e.g. EMFILE, EACCES
            raise ModelRepositoryError(f"{model_dir}: cannot be listed ({error})") from None
        return sorted(found, key=lambda folder: int(folder.version))

    def newest(self) -> VersionFolder:
        versions = self.versions()
        if not versions:
            raise ModelRepositoryError(f"{self.model_dir()}: no version folder (1/, 2/, ...)")
        return versions[-1]


def check_name(name: str) -> str:
    """`name` if it is a safe model name, else ModelRepositoryError."""
    if not _NAME_PATTERN.fullmatch(name):
        raise ModelRepositoryError(
            f"model name {name!r}: use letters, digits, '.', '_' or '-', not starting with a symbol"
        )
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """Version numbers under models/<name>/, ascending (none if the folder does not exist)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        number for number in map(_version_number, model_dir.iterdir()) if number is not None
    )


def next_version(model_dir: Path) -> int:
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def is_version_name(name: str) -> bool:
    """Whether `name` names a version folder: 1, 2, ... in ASCII digits, no leading zero."""
    return _VERSION_PATTERN.fullmatch(name) is not None


def _version_number(path: Path) -> int | None:
    if is_version_name(path.name) and path.is_dir():
        return int(path.name)
    return None


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Name, kind, size and mtime of every entry in the folder (a FIFO or a link to a device
    counts too: replacing it by a file changes the fingerprint)."""
    entries = []
    try:
        paths = sorted(folder.iterdir())
    except OSError:  # the folder went away while being listed
        return ()
    for path in paths:
        try:
            status = path.stat()
        except OSError:
            entries.append((path.name, -1, -1, -1))  # e.g. a dangling link
            continue
        kind = stat.S_IFMT(status.st_mode)
        entries.append((path.name, kind, status.st_size, status.st_mtime_ns))
    return tuple(entries)


def _hidden(path: Path) -> bool:
    return path.name.startswith((".", "_"))
