"""Where the service's time goes under load: py-spy samples and CPU accounting of its processes."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)
_LINE_NUMBER = re.compile(r":\d+\)$")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


_PROCESS = re.compile(r"^process (\d+):")
_THREAD = re.compile(r"^thread \(\w+\): (.*)$")
# Frames every stack of a thread passes through (interpreter start, event loop, thread start):
# left out of the inclusive table, where they would only say "100%".
_SCAFFOLDING = re.compile(
    r"\((<frozen runpy>|threading\.py|asyncio/runners\.py|cvae/__main__\.py|cvae/cli\.py"
    r"|service/cli\.py|_asynciomodule\.c|libc\.so\.6)\)$"
    r"|^BaseEventLoop\.(run_forever|run_until_complete|_run_once) "
)
_NATIVE_ADDRESS = re.compile(r"^0x[0-9a-f]+ \((?:.*/)?([^/)]+)\)$")


def _frame(raw: str) -> str:
    """A frame without its line number; anonymous native code grouped by its library."""
    native = _NATIVE_ADDRESS.match(raw)
    if native:
        return f"[native] ({native.group(1)})"
    return _LINE_NUMBER.sub(")", raw)


@dataclass(frozen=True)
class StackProfile:
    """Collapsed stacks: (thread, frames outermost first) and how many samples each got."""

    stacks: dict[tuple[str, tuple[str, ...]], int]

    @classmethod
    def parse(cls, text: str) -> StackProfile:
        stacks: Counter[tuple[str, tuple[str, ...]]] = Counter()
        for line in text.splitlines():
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            process, thread, frames = "", "", []
            for raw in stack.split(";"):
                if match := _PROCESS.match(raw):
                    process = match.group(1)
                elif match := _THREAD.match(raw):
                    thread = match.group(1)
                else:
                    frames.append(_frame(raw))
            if frames:
                name = f"{thread or 'thread'} (pid {process})" if process else thread or "thread"
                stacks[(name, tuple(frames))] += int(count)
        return cls(dict(stacks))

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def thread_busy(self, rate: float, seconds: float) -> dict[str, float]:
        """Share of the wall time each thread was seen running (py-spy skips idle threads)."""
        per_thread: Counter[str] = Counter()
        for (thread, _), count in self.stacks.items():
            per_thread[thread] += count
        possible = rate * seconds
        return {thread: count / possible for thread, count in per_thread.most_common()}

    def self_shares(self, top: int = 12) -> list[tuple[str, float]]:
        """Leaf frames: where the samples were actually executing."""
        leaves: Counter[str] = Counter()
        for (_, frames), count in self.stacks.items():
            leaves[frames[-1]] += count
        return _shares(leaves, self.samples, top)

    def inclusive_shares(self, top: int = 20) -> list[tuple[str, float]]:
        """Frames anywhere on the stack: what the samples were working for."""
        inclusive: Counter[str] = Counter()
        for (_, frames), count in self.stacks.items():
            for frame in set(frames):
                if not _SCAFFOLDING.search(frame):
                    inclusive[frame] += count
        return _shares(inclusive, self.samples, top)


def _shares(counts: Counter[str], total: int, top: int) -> list[tuple[str, float]]:
    if total == 0:
        return []
    return [(frame, count / total) for frame, count in counts.most_common(top)]


def group_cpu_seconds(process_group: int) -> float:
    """User + system CPU seconds of a server's live processes (see `_server_processes`)."""
    total = 0
    for fields in _server_processes(process_group).values():
        # after the command: state ppid pgrp session ... utime (index 11) stime (12)
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def group_rss_mib(process_group: int) -> float:
    total_kib = 0
    for pid in _server_processes(process_group):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def children_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each live child of `pid` (e.g. the workers of `cvae serve`)."""
    return {
        child: (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        for child, fields in _server_processes(pid).items()
        if int(fields[1]) == pid
    }


def _server_processes(process_group: int) -> dict[int, list[str]]:
    """/proc/PID/stat fields (after the command) of the processes of one process group and of
    their descendants in other groups (`cvae serve --workers` gives each worker its own)."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
    members = {pid for pid, fields in stats.items() if int(fields[2]) == process_group}
    while True:
        children = {pid for pid, fields in stats.items() if int(fields[1]) in members}
        if children <= members:
            return {pid: stats[pid] for pid in members}
        members |= children


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


# What each kind of recording samples.
MODES = {
    # every running thread, Python frames; the server runs at full speed
    "threads": ["--threads", "--nonblocking"],
    # only the thread holding the GIL, with native frames (C, Cython, libc): where the GIL goes.
    # Native unwinding pauses the process at each sample, so the server runs slower meanwhile.
    "gil-native": ["--threads", "--gil", "--native"],
}


def record_under_load(
    pid: int,
    load: Callable[[], Any],
    *,
    seconds: float,
    out: Path,
    mode: str = "threads",
    rate: int = 200,
) -> dict[str, Any]:
    """Sample `pid` (and its children) with py-spy while `load()` runs; CPU use alongside."""
    py_spy = py_spy_path()
    if py_spy is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    duration = max(1, round(seconds))
    args = [
        py_spy, "record", "--pid", str(pid), "--subprocesses", *MODES[mode],
        "--duration", str(duration), "--rate", str(rate),
        "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    cpu_before, wall_before = group_cpu_seconds(pid), time.monotonic()
    sampler = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        load_result = load()
    finally:
        sampler_output = sampler.communicate(timeout=seconds + 60)[0].decode(errors="replace")
    cpu = group_cpu_seconds(pid) - cpu_before
    wall = time.monotonic() - wall_before
    if sampler.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {sampler_output[-1500:]}", "load": load_result}
    profile = StackProfile.parse(out.read_text())
    found = {
        "mode": mode,
        "samples": profile.samples,
        "server_cpu_cores": cpu / wall if wall > 0 else 0.0,
        "self": profile.self_shares(),
        "inclusive": profile.inclusive_shares(),
        "load": load_result,
    }
    if mode == "threads":
        found["thread_busy"] = profile.thread_busy(rate, duration)
    return found
