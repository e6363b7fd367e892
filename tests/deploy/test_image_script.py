"""The image's own install and start steps, run as the Dockerfile runs them, without Docker.

The builder stage's COPY lines lay out a build context in a temporary folder, its RUN line
builds the serving venv there (`image.sh install serve`, pip from this machine's indexes), and
the serve stage's ENTRYPOINT starts the server with the pod's settings (the base ConfigMap).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.deploy.dockerfile import Stage, stages
from tests.deploy.manifests import ROOT, one, render
from tests.deploy.models import model_repository
from tests.deploy.server import running_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _lay_out_context(stage: Stage, context: Path) -> None:
    """Do what the stage's COPY instructions do, from the repository into `context`."""
    for source_stage, sources, destination in stage.copies():
        assert source_stage is None, "the builder copies from the build context only"
        for source in sources:
            origin = ROOT / source
            target = context / destination
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=_IGNORED, dirs_exist_ok=True)
            elif destination.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(build context, venv) after the builder stage's RUN line."""
    builder = stages()["builder"]
    context = tmp_path_factory.mktemp("context")
    _lay_out_context(builder, context)
    (run,) = builder.values("RUN")
    words = run.split()
    assert words[:4] == ["sh", "deploy/image.sh", "install", "serve"], run
    venv = context.parent / "venv"
    result = subprocess.run(
        ["sh", "deploy/image.sh", "install", "serve", str(venv)],
        cwd=context,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHON": sys.executable,
            "HOME": str(context),
        },
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return context, venv


def test_the_serving_venv_has_no_torch_and_no_pip(serving_venv: tuple[Path, Path]) -> None:
    _, venv = serving_venv
    python = str(venv / "bin" / "python")
    for module in ("torch", "pip", "setuptools"):
        result = subprocess.run(
            [python, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0, f"{module} is importable in the serving venv"
        assert "ModuleNotFoundError" in result.stderr
    result = subprocess.run(
        [python, "-c", "import onnxruntime, grpc, service.cli"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_entrypoint_serves_with_the_pod_settings_and_writes_nothing_outside_tmp(
    serving_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    context, venv = serving_venv
    serve = stages()["serve"]
    # The image's files: the script and the baked-in model repository, as the serve stage copies.
    opt = tmp_path / "opt"
    shutil.copytree(model_repository(tmp_path / "models-source"), opt / "models")
    shutil.copy2(context / "deploy" / "image.sh", opt / "image.sh")
    writable_tmp = tmp_path / "tmp"
    writable_tmp.mkdir()
    # The environment of a pod: the image's ENV, then the ConfigMap, paths moved under tmp_path.
    environ = {k: v for k, v in serve.env().items() if k not in ("PATH", "VIRTUAL_ENV")}
    environ |= one(render("base"), "ConfigMap")["data"]
    environ |= {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(writable_tmp),
        "TMPDIR": str(writable_tmp),
        "XDG_CACHE_HOME": str(writable_tmp / ".cache"),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_MODEL_REPOSITORY": str(opt / "models"),
        "CVAE_INTRA_OP_THREADS": "1",
        "CVAE_GRACE_PERIOD": "5",
    }
    entrypoint = serve.exec_form("ENTRYPOINT")
    assert entrypoint[:2] == ["/bin/sh", "/opt/cvae/image.sh"]
    command = ["/bin/sh", str(opt / "image.sh"), *entrypoint[2:], *serve.exec_form("CMD")]
    before = _snapshot(venv, opt)
    with running_server(command, environ, tmp_path / "server.log", cwd=writable_tmp) as server:
        assert server.health("") == health_pb2.HealthCheckResponse.SERVING
        response = server.generate(list(range(10)), seed=7)
        assert list(response.images.shape[:1]) == [10]
        assert list(response.labels) == list(range(10))
        assert response.model_name
        process = server.process
    # SIGTERM reached the server itself (the script execs it) and it drained cleanly.
    assert process.returncode == 0, (tmp_path / "server.log").read_text()
    assert _snapshot(venv, opt) == before, "the server wrote outside /tmp"
