"""`cvae generate` SIGKILLed at several random moments, re-run each time, ends with exactly the
bytes of an uninterrupted run: no image lost, none duplicated, nothing half-written left behind.

tests/cvae/jobs/test_generate_job.py kills one run once, after three chunks; here the kill points
are drawn at random (seeded; the seed is in the test id) and a run may be killed repeatedly,
including while it starts, writes chunks, or assembles the dataset.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvae.jobs.readers import read_dataset, verify_manifest
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(300)
_ROOT = Path(__file__).resolve().parents[2]
_JOB = ["--per-label", "100", "--seed", "11", "--chunk-size", "10", "--concurrency", "1",
        "--no-progress"]  # fmt: skip
_KILLS = 4


def _command(server: ServerProcess, out: Path, fmt: str) -> list[str]:
    return [sys.executable, "-m", "cvae", "generate", "--server", server.address,
            "--format", fmt, "--out", str(out), *_JOB]  # fmt: skip


def _digest(out: Path) -> dict[str, str]:
    """sha256 of every file of the dataset (a folder, or a file and its manifest)."""
    files = sorted(out.rglob("*")) if out.is_dir() else [out, Path(f"{out}.manifest.json")]
    base = out if out.is_dir() else out.parent
    return {str(f.relative_to(base)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in files if f.is_file()}  # fmt: skip


def _wait_for_chunks(folder: Path, count: int, process: subprocess.Popen[bytes]) -> None:
    while process.poll() is None:
        if folder.is_dir() and len(list(folder.iterdir())) >= count:
            return
        time.sleep(0.002)


@pytest.mark.parametrize(("fmt", "seed"), [("npz", 1), ("png-dir", 2), ("idx", 3)])
def test_random_sigkills_then_rerun_give_the_uninterrupted_dataset(
    server: ServerProcess, tmp_path: Path, fmt: str, seed: int
) -> None:
    clean = tmp_path / "clean" / "data"
    clean.parent.mkdir()
    started = time.monotonic()
    subprocess.run(_command(server, clean, fmt), cwd=_ROOT, check=True, timeout=120)
    duration = time.monotonic() - started

    out = tmp_path / "killed" / "data"
    out.parent.mkdir()
    draw = random.Random(seed)
    kills, mid_run = 0, 0
    for attempt in range(_KILLS):
        process = subprocess.Popen(_command(server, out, fmt), cwd=_ROOT)
        # The first kill lands after a random number of chunks; later ones at a random time,
        # from start-up (imports, plan) through resumed chunks to assembling the dataset.
        if attempt == 0:
            _wait_for_chunks(Path(f"{out}.partial") / "chunks", draw.randint(1, 80), process)
        else:
            time.sleep(draw.uniform(0.05, 1.0) * duration)
        if process.poll() is not None:
            assert process.returncode == 0
            break  # finished by itself: the rest would be no-ops
        process.kill()
        process.wait(60)
        kills += 1
        mid_run += Path(f"{out}.partial").is_dir()  # killed with work on disk
    result = subprocess.run(
        _command(server, out, fmt), cwd=_ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert kills >= 1 and mid_run >= 1, "no run was killed midway: the test proved nothing"
    assert _digest(out) == _digest(clean)
    assert verify_manifest(out) == []
    images, labels = read_dataset(out)[:2]
    assert images.shape == (1000, 28, 28) and labels.tolist() == [i % 10 for i in range(1000)]
    leftovers = sorted(p.name for p in out.parent.iterdir())
    expected = ["data", "data.manifest.json"] if fmt == "npz" else ["data"]
    assert leftovers == expected, "partial or temporary files left behind"
