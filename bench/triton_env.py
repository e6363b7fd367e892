"""The separate Python 3.12 environment that runs NVIDIA Triton through PyTriton.

PyTriton's Python-backend stub loads `libpython3.X.so` of the interpreter it runs under; with this
machine's Python 3.11 it failed to start, with a Python 3.12 venv and that Python's `lib/` on
LD_LIBRARY_PATH it works. So Triton gets its own venv (`.venv-triton/`, gitignored), built here
once and reused while bench/triton-requirements.txt is unchanged.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
REQUIREMENTS = Path(__file__).with_name("triton-requirements.txt")
_PROBE = (
    "import json, sys, sysconfig; print(json.dumps([sys.version_info[:2], "
    "sysconfig.get_config_var('LIBDIR'), sysconfig.get_config_var('LDLIBRARY')]))"
)


class TritonEnvError(RuntimeError):
    """No Python 3.12 with a shared libpython, or the install failed."""


@dataclass(frozen=True)
class TritonEnv:
    python: Path
    libdir: Path

    def environment(self) -> dict[str, str]:
        existing = os.environ.get("LD_LIBRARY_PATH", "")
        return {"LD_LIBRARY_PATH": f"{self.libdir}:{existing}" if existing else str(self.libdir)}


def _probe(python: str) -> tuple[tuple[int, int], Path, str] | None:
    try:
        completed = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    if completed.returncode != 0:
        return None
    version, libdir, library = json.loads(completed.stdout)
    return (int(version[0]), int(version[1])), Path(libdir), str(library)


def find_python312() -> tuple[Path, Path]:
    """(interpreter, its libdir) of a Python 3.12 built with a shared libpython."""
    candidates = [os.environ.get("BENCH_TRITON_PYTHON", ""), shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    tried = []
    for candidate in filter(None, candidates):
        probed = _probe(candidate)
        tried.append(candidate)
        if probed is None:
            continue
        version, libdir, _library = probed
        if version == (3, 12) and (libdir / "libpython3.12.so").exists():
            return Path(candidate), libdir
    raise TritonEnvError(
        "PyTriton needs a Python 3.12 with a shared libpython (tried: "
        + (", ".join(tried) or "nothing found")
        + "); set BENCH_TRITON_PYTHON to one, e.g. `pyenv install 3.12` "
        "(built with --enable-shared) or Debian's python3.12"
    )


def ensure(venv: Path) -> TritonEnv:
    """Create or reuse `venv` with bench/triton-requirements.txt installed."""
    base_python, libdir = find_python312()
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes() + str(base_python).encode()).hexdigest()
    stamp = venv / ".bench-installed"
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return TritonEnv(python, libdir)
    _LOGGER.info("building %s from %s (one time, about a minute)", venv, base_python)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [str(base_python), "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
    ]  # fmt: skip
    for step in steps:
        completed = subprocess.run(step, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise TritonEnvError(f"{' '.join(step)} failed:\n{completed.stderr[-3000:]}")
    stamp.write_text(wanted)
    return TritonEnv(python, libdir)
