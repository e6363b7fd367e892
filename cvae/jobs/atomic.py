"""Files and folders that appear only when complete: write to a temporary name, then rename."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_TMP_MARK = ".tmp-"


class OutputError(Exception):
    """The output cannot be written (unwritable place, disk full, ...); nothing partial is left."""


def temporary_sibling(path: Path) -> Path:
    """A hidden name next to `path`, unique to this process."""
    return path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files or folders left in `folder` by a killed run."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(f".*{_TMP_MARK}*"):
        _remove(leftover)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Yield a file to write; it becomes `path` only if the block finishes without error."""
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty folder to fill; it replaces `path` only if the block finishes."""
    tmp = temporary_sibling(path)
    _remove(tmp)
    try:
        tmp.mkdir()
        yield tmp
        if path.exists():
            _remove(path)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as stream:
        stream.write(data)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def describe_os_error(error: OSError, path: Path) -> str:
    reason = error.strerror or str(error)
    return f"cannot write {path}: {reason}"
