"""What the numbers were measured on: CPU, cores, memory, load and software versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from modelrepo import utc_timestamp

_REPOSITORY = Path(__file__).resolve().parents[1]
_PACKAGES = ("onnxruntime", "grpcio", "protobuf", "numpy", "onnx", "torch", "pillow")


def repository_path(path: Path) -> str:
    """`path` relative to the repository when inside it, so results and docs name no machine."""
    try:
        return str(Path(path).resolve().relative_to(_REPOSITORY))
    except ValueError:
        return str(path)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(
                    flag for flag in flags if flag.startswith(("avx512", "avx_vnni", "amx"))
                )
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _tool_version(args: list[str]) -> str | None:
    try:
        completed = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return (
        (completed.stdout or completed.stderr).strip().splitlines()[0]
        if completed.returncode == 0
        else None
    )


def describe() -> dict[str, Any]:
    return {
        "measured_at": utc_timestamp(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_flags": _cpu_flags(),
        "memory_gib": _memory_gib(),
        "load_average_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {package: _version(package) for package in _PACKAGES},
        "h2load": _tool_version(["h2load", "--version"]),
    }


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
