"""Start-up on a missing or corrupt model repository: exit 1 with ONE line naming file and problem.

tests/service/test_lifecycle.py covers a missing folder, a sha256 mismatch, bad JSON, a truncated
ONNX and wrong input names; these are the other ways a repository can be broken.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cvae.v1 import generator_pb2 as pb
from tests.service.modelrepo import write_version
from tests.service.serverproc import ServerProcess, run_serve

pytestmark = pytest.mark.timeout(180)


def _broken(breakage: str) -> Callable[[Path], Path]:
    return lambda root: write_version(root, "1", breakage=breakage)


def _empty_onnx(root: Path) -> Path:
    folder = write_version(root, "1")
    (folder / "model.onnx").write_bytes(b"")
    return folder


def _json_is_a_folder(root: Path) -> Path:
    folder = write_version(root, "1")
    (folder / "model.json").unlink()
    (folder / "model.json").mkdir()
    return folder


def _no_version(root: Path) -> Path:
    (root / "cvae-mnist").mkdir(parents=True)
    return root / "cvae-mnist"


def _no_model(root: Path) -> Path:
    root.mkdir()
    return root


@pytest.mark.parametrize(
    ("make", "named", "problem"),
    [
        (_broken("missing_onnx"), "model.onnx", "file is missing"),
        (_broken("missing_key"), "model.json", "missing key 'latent_dim'"),
        (_broken("wrong_output_shape"), "model.onnx", "model.json says float32[1, 28, 28]"),
        (_empty_onnx, "model.onnx", "does not match onnx_sha256"),
        (_json_is_a_folder, "model.json", "not a regular file (a folder)"),
        (_no_version, "", "no version folder"),
        (_no_model, "", "holds no model folder"),
    ],
    ids=["missing-onnx", "missing-key", "wrong-output-shape", "empty-onnx", "json-is-a-folder",
         "no-version", "no-model"],
)  # fmt: skip
def test_a_broken_repository_exits_1_with_one_line_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], named: str, problem: str
) -> None:
    root = tmp_path / "models"
    where = make(root) / named if named else make(root)
    result = run_serve(root)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {str(where).rstrip('/')}: "), lines[0]
    assert problem in lines[0]
    assert "Traceback" not in result.stderr


def _signal_mask(pid: int, field: str) -> int:
    """SigIgn / SigCgt of /proc/<pid>/status as a bit mask (bit n-1 for signal n)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    return 0


def test_sighup_from_the_first_moment_of_start_up_does_not_kill_the_server(
    tmp_path: Path,
) -> None:
    """SIGHUPs (an operator's or a sidecar's "rescan") every 20 ms from the first step of
    `cvae serve` until SERVING: the server starts and serves."""
    root = tmp_path / "models"
    write_version(root, "1")
    server = ServerProcess(root).start(wait=False)
    try:
        assert server.process is not None
        pid = server.process.pid
        sigint, sighup = 1 << (signal.SIGINT - 1), 1 << (signal.SIGHUP - 1)
        deadline = time.monotonic() + 30
        while not _signal_mask(pid, "SigCgt") & sigint:  # Python's own SIGINT handler is set
            assert time.monotonic() < deadline and server.process.poll() is None
            time.sleep(0.001)
        # `cvae serve` ignores SIGHUP from its first step, long before the server's handler
        # (installed once grpc and onnxruntime are imported) exists. Wait for either: on a
        # loaded machine this poll can sleep through the whole ignored phase and first see the
        # handler; the signals below then start later than they could, never earlier.
        while not (_signal_mask(pid, "SigIgn") | _signal_mask(pid, "SigCgt")) & sighup:
            assert time.monotonic() < deadline and server.process.poll() is None
            time.sleep(0.001)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.process.poll() is None, f"killed by SIGHUP:\n{server.log()}"
            server.signal(signal.SIGHUP)
            try:
                if server.health(timeout=0.5) == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.02)
        else:
            raise AssertionError(f"not SERVING:\n{server.log()}")
        response = server.stub.Generate(pb.GenerateRequest(labels=[5]), timeout=30)
        assert response.model_version == "1"
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0
    finally:
        server.stop()


def _big_model_json(root: Path) -> Path:
    folder = write_version(root, "1")
    path = folder / "model.json"
    path.write_text(
        path.read_text().replace(
            '"training_config": {', '"pad": "' + "x" * (1 << 20) + '", "training_config": {', 1
        )
    )
    return folder


@pytest.mark.parametrize(
    ("make", "args", "named", "problem"),
    [
        (lambda root: write_version(root, "1"), ("--max-model-bytes", "100000"), "model.onnx",
         "too big (a version's files may have at most 100000 bytes in all, --max-model-bytes)"),
        (_big_model_json, (), "model.json", "too big (model.json may have at most 1048576 bytes)"),
    ],
    ids=["max-model-bytes", "model-json-over-1-mib"],
)  # fmt: skip
def test_a_version_over_its_size_caps_is_refused_before_it_is_read(
    tmp_path: Path, make: Callable[[Path], Path], args: tuple[str, ...], named: str, problem: str
) -> None:
    root = tmp_path / "models"
    where = make(root) / named
    result = run_serve(root, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cvae serve: {where}: "), lines[0]
    assert problem in lines[0], lines[0]
