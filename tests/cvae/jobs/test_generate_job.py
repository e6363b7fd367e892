"""`cvae generate` against a real server: formats, determinism, shards, resume, safe failures."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cvae.cli import main
from cvae.client import Client
from cvae.jobs.plan import chunk_seed
from cvae.jobs.readers import read_dataset, read_manifest, verify_manifest

_ROOT = Path(__file__).resolve().parents[3]
_JOB = ["--per-label", "20", "--labels", "0,3,7", "--seed", "42", "--chunk-size", "16"]


def _generate(server: str, out: Path, *extra: str) -> int:
    return main(["generate", "--server", server, *_JOB, "--out", str(out), "--no-progress", *extra])


def _tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under `path` (or of `path` and its manifest), by relative name."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path, Path(f"{path}.manifest.json")]
    base = path if path.is_dir() else path.parent
    return {
        str(f.relative_to(base)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in files
        if f.is_file()
    }


@pytest.mark.parametrize("fmt", ["npz", "png-dir", "idx"])
def test_each_format_round_trips_to_what_the_server_draws(
    server: str, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / ("data.npz" if fmt == "npz" else "data")
    assert _generate(server, out, "--format", fmt) == 0
    images, labels = read_dataset(out)
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 3, 7] * 20
    # chunk 1 holds images 16..31, drawn with the chunk's derived seed
    with Client(server) as client:
        direct = client.generate(labels[16:32], seed=chunk_seed(42, 1))
    assert np.array_equal(images[16:32], direct.images)
    manifest = read_manifest(out)
    assert manifest["counts"] == {"0": 20, "3": 20, "7": 20}
    assert manifest["seed"] == 42 and manifest["model"]["version"]
    assert verify_manifest(out) == []
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))


def test_same_command_gives_byte_identical_files(server: str, tmp_path: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        assert _generate(server, tmp_path / run / "data", "--format", "png-dir") == 0
    assert _tree_digest(tmp_path / "a" / "data") == _tree_digest(tmp_path / "b" / "data")


@pytest.mark.parametrize(("shard_count", "fmt"), [(3, "npz"), (2, "idx")])
def test_merged_shards_equal_the_unsharded_run(
    server: str, tmp_path: Path, shard_count: int, fmt: str
) -> None:
    (tmp_path / "whole").mkdir()
    name = "data.npz" if fmt == "npz" else "data"
    assert _generate(server, tmp_path / "whole" / name, "--format", fmt) == 0
    shards = [tmp_path / f"shard-{i}" for i in range(shard_count)]
    for index, shard in enumerate(shards):
        # the Indexed Job way: no flags, only the environment
        env = {"JOB_COMPLETION_INDEX": str(index), "CVAE_SHARD_COUNT": str(shard_count)}
        os.environ.update(env)
        try:
            assert _generate(server, shard, "--format", fmt) == 0
        finally:
            for key in env:
                del os.environ[key]
    chunk_sets = [{p.name for p in (s / "chunks").iterdir()} for s in shards]
    assert all(a.isdisjoint(b) for i, a in enumerate(chunk_sets) for b in chunk_sets[i + 1 :])
    assert sum(map(len, chunk_sets)) == 4  # 60 images in chunks of 16
    merged = tmp_path / "merged" / name
    assert main(["generate", "merge", *map(str, shards), "--out", str(merged)]) == 0
    assert _tree_digest(merged) == _tree_digest(tmp_path / "whole" / name)


def test_merge_refuses_an_incomplete_set_of_shards(server: str, tmp_path: Path) -> None:
    shards = [tmp_path / f"shard-{i}" for i in range(3)]
    for index in (0, 1):
        flags = ["--shard-index", str(index), "--shard-count", "3"]
        assert _generate(server, shards[index], *flags) == 0
    code = main(["generate", "merge", str(shards[0]), str(shards[1]), "--out", str(tmp_path / "m")])
    assert code == 1
    assert not (tmp_path / "m").exists()


def _cli(server: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cvae", "generate", "--server", server, "--out", str(out), *extra]


def test_resume_after_a_kill_gives_the_uninterrupted_result(server: str, tmp_path: Path) -> None:
    job = ["--per-label", "300", "--seed", "5", "--chunk-size", "10", "--concurrency", "1"]
    (tmp_path / "clean").mkdir()
    assert main(["generate", "--server", server, *job, "--out", str(tmp_path / "clean" / "d.npz"),
                 "--no-progress"]) == 0  # fmt: skip

    out = tmp_path / "d.npz"
    chunks = tmp_path / "d.npz.partial" / "chunks"
    total = -(-300 * 10 // 10)
    process = subprocess.Popen(_cli(server, out, *job), cwd=_ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        done = len(list(chunks.glob("chunk-*.npy"))) if chunks.is_dir() else 0
        if done >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    kept = len(list(chunks.glob("chunk-*.npy")))
    assert 3 <= kept < total
    assert not out.exists()

    assert main(["generate", "--server", server, *job, "--out", str(out), "--no-progress"]) == 0
    assert not chunks.exists()
    assert _tree_digest(out)[out.name] == _tree_digest(tmp_path / "clean" / "d.npz")["d.npz"]
    assert (
        out.with_name("d.npz.manifest.json").read_bytes()
        == (tmp_path / "clean" / "d.npz.manifest.json").read_bytes()
    )
    # once complete, the same command is a no-op that keeps the files
    before = _tree_digest(out)
    assert main(["generate", "--server", server, *job, "--out", str(out), "--no-progress"]) == 0
    assert _tree_digest(out) == before


def test_unwritable_output_is_a_clear_error_and_leaves_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    assert _generate(server, blocker / "data.npz") == 1
    assert "cannot" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def _with_file_size_limit(limit: int, command: list[str]) -> list[str]:
    """`command` (a `python -m cvae ...` line) run where files cannot grow past `limit` bytes.

    The limit is set by the child itself rather than in a preexec_fn: forking this process,
    which holds gRPC channels, and running Python before exec can crash gRPC's poller.
    """
    launcher = (
        "import resource, runpy, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, not a kill\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "sys.argv = ['cvae', *sys.argv[1:]]\n"
        "runpy.run_module('cvae', run_name='__main__')\n"
    )
    return [sys.executable, "-c", launcher, *command[3:]]


@pytest.mark.parametrize(
    ("fmt", "limit"),
    [
        ("npz", 20_000),  # chunks (7.8 kB) fit, the dataset does not
        ("png-dir", 20_000),  # the PNGs fit, the manifest does not
        ("npz", 4_000),  # not even one chunk fits
    ],
)
def test_a_full_disk_leaves_nothing_half_written(
    server: str, tmp_path: Path, fmt: str, limit: int
) -> None:
    out = tmp_path / "data"
    job = ["--per-label", "30", "--chunk-size", "10", "--format", fmt, "--no-progress"]
    result = subprocess.run(
        _with_file_size_limit(limit, _cli(server, out, *job)),
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "cvae generate: error: cannot write" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(tmp_path.rglob(".*")), "temporary files left behind"
    partial = tmp_path / "data.partial" / "chunks"
    if limit < 7_840:
        assert list(tmp_path.iterdir()) == []
        return
    # whole chunks are kept: once there is room, a re-run finishes from them
    assert len(list(partial.iterdir())) == 30
    assert main(["generate", "--server", server, "--out", str(out), *job]) == 0
    assert verify_manifest(out) == []
    assert read_dataset(out)[0].shape == (300, 28, 28)


def test_unknown_label_and_unreachable_server_are_clear_errors(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(server) as client:
        num_classes = client.model_info().num_classes
    out = tmp_path / "data.npz"
    assert _generate(server, out, "--labels", f"1,{num_classes}") == 1
    assert f"unknown label(s) [{num_classes}]" in capsys.readouterr().err
    assert main(["generate", "--server", "127.0.0.1:1", "--per-label", "1", "--timeout", "3",
                 "--out", str(out)]) == 1  # fmt: skip
    assert "cannot reach the generation service at 127.0.0.1:1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_grid_and_interpolation_pngs(server: str, tmp_path: Path) -> None:
    from PIL import Image

    grid = tmp_path / "grid.png"
    strip = tmp_path / "strip.png"
    assert main(["generate", "--server", server, "--grid", "--labels", "0,1,2", "--per-label",
                 "5", "--out", str(grid)]) == 0  # fmt: skip
    assert main(["generate", "--server", server, "--interpolate", "1", "2", "--label", "3",
                 "--steps", "7", "--out", str(strip)]) == 0  # fmt: skip
    # 2 px padding around 28 px tiles, scaled 2×
    assert Image.open(grid).size == ((5 * 30 + 2) * 2, (3 * 30 + 2) * 2)
    assert Image.open(strip).size == ((7 * 30 + 2) * 2, (1 * 30 + 2) * 2)
    pixels = np.asarray(Image.open(strip))
    assert pixels.std() > 0


def test_a_different_job_is_never_mixed_into_existing_output(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data.npz"
    assert _generate(server, out) == 0
    before = _tree_digest(out)
    assert _generate(server, out, "--temperature", "0.5") == 1
    assert "already holds another dataset" in capsys.readouterr().err
    assert _tree_digest(out) == before
    # an interrupted job's chunks are not reused for another seed
    partial = tmp_path / "other.npz.partial"
    shard = ["--shard-index", "0", "--shard-count", "2"]
    assert _generate(server, tmp_path / "s", *shard) == 0
    (tmp_path / "s").rename(partial)
    assert _generate(server, tmp_path / "other.npz", "--seed", "43") == 1
    assert "holds a different job (differs in seed)" in capsys.readouterr().err
