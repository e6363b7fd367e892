"""Resident memory of a process, from /proc/<pid>/status (Linux)."""

from __future__ import annotations

from pathlib import Path


def resident_mib(pid: int) -> float:
    """VmRSS of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")
