"""A memory-limited cgroup of this machine's own (v1 or v2), as a pod's memory limit is one.

Made by hand under the cgroup this test process runs in (no systemd-run): a child folder with its
limit written, the server moved in before it starts (`command` wraps it), killed and removed at
the end. Needs write access to the memory controller (root, or a delegated subtree).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path
    version: int  # 1: the memory controller's own hierarchy; 2: the unified one

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv`, run inside this cgroup from its first instruction (a shell moves itself in,
        then execs it)."""
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh", *argv]

    def oom_kills(self) -> int:
        """Processes of the cgroup the kernel's OOM killer has killed."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def peak_bytes(self) -> int:
        """The cgroup's highest charge (resident memory and page cache)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int((self.path / name).read_text())


def _own(controller_line: str) -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == controller_line or (controller_line == "" and controllers == ""):
            return Path(path.lstrip("/"))
    return None


def _where() -> tuple[Path, int] | None:
    v1 = _ROOT / "memory"
    if (v1 / "memory.limit_in_bytes").exists():
        own = _own("memory")
        if own is not None:
            return v1 / own, 1
    unified = _ROOT / "unified" if (_ROOT / "unified").is_dir() else _ROOT
    own = _own("")
    if own is not None and "memory" in (unified / own / "cgroup.controllers").read_text().split():
        return unified / own, 2
    return None


def unavailable() -> str | None:
    """Why no memory cgroup can be made here; None when one can."""
    where = _where()
    if where is None:
        return "no cgroup memory controller (v1 or v2) for this process"
    if not os.access(where[0], os.W_OK):
        return f"{where[0]} is not writable (needs root or a delegated cgroup)"
    return None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int, name: str) -> Iterator[MemoryCgroup]:
    where = _where()
    assert where is not None, unavailable()
    parent, version = where
    path = parent / f"{name}-{os.getpid()}"
    path.mkdir()
    try:
        if version == 1:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            # No swap beyond the limit either (memsw exists only with swap accounting).
            memsw = path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limit_bytes))
        else:
            (path / "memory.max").write_text(str(limit_bytes))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
        yield MemoryCgroup(path, version)
    finally:
        for _ in range(50):
            pids = (path / "cgroup.procs").read_text().split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.1)
        path.rmdir()
