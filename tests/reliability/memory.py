"""Resident memory and page faults of a process, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def resident_mib(pid: int) -> float:
    """VmRSS of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def page_faults(pid: int) -> int:
    """Minor page faults of every thread of `pid` so far (/proc/PID/task/*/stat, field 10)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        total += int(fields[7])
    return total
