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


@dataclass(frozen=True)
class StackProfile:
    """Collapsed stacks: frame lists (outermost first) and how many samples each got."""

    stacks: dict[tuple[str, ...], int]

    @classmethod
    def parse(cls, text: str) -> StackProfile:
        stacks: Counter[tuple[str, ...]] = Counter()
        for line in text.splitlines():
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = tuple(
                _LINE_NUMBER.sub(")", frame)
                for frame in stack.split(";")
                if not frame.startswith(("process ", "thread "))
            )
            if not frames:
                continue
            stacks[frames] += int(count)
        return cls(dict(stacks))

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def self_shares(self, top: int = 12) -> list[tuple[str, float]]:
        """Leaf frames: where the samples were actually executing."""
        leaves: Counter[str] = Counter()
        for frames, count in self.stacks.items():
            leaves[frames[-1]] += count
        return _shares(leaves, self.samples, top)

    def inclusive_shares(self, top: int = 20) -> list[tuple[str, float]]:
        """Frames anywhere on the stack: what the samples were working for."""
        inclusive: Counter[str] = Counter()
        for frames, count in self.stacks.items():
            for frame in set(frames):
                inclusive[frame] += count
        return _shares(inclusive, self.samples, top)


def _shares(counts: Counter[str], total: int, top: int) -> list[tuple[str, float]]:
    if total == 0:
        return []
    return [(frame, count / total) for frame, count in counts.most_common(top)]


def group_cpu_seconds(process_group: int) -> float:
    """User + system CPU seconds of the live processes of one process group (server + workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid pgrp session ... utime (index 11) stime (12)
        if int(fields[2]) == process_group:
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def group_rss_mib(process_group: int) -> float:
    total_kib = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            stat = (status.parent / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[2]) != process_group:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_under_load(
    pid: int, load: Callable[[], Any], *, seconds: float, out: Path, rate: int = 200
) -> dict[str, Any]:
    """Sample `pid` (and its children) with py-spy while `load()` runs; CPU use alongside."""
    py_spy = py_spy_path()
    if py_spy is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [
        py_spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
        "--duration", str(max(1, round(seconds))), "--rate", str(rate),
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
    return {
        "samples": profile.samples,
        "server_cpu_cores": cpu / wall if wall > 0 else 0.0,
        "self": profile.self_shares(),
        "inclusive": profile.inclusive_shares(),
        "load": load_result,
    }
