"""The image's own install and start steps, run as the Dockerfile runs them, without Docker.

The builder stage's COPY lines lay out a build context in a temporary folder, its RUN line
builds the serving venv there (`image.sh install serve`, pip from this machine's indexes), and
the serve stage's ENTRYPOINT starts the server with the pod's settings (the base ConfigMap), and
the generate and merge Jobs' own arguments run through the same entrypoint against it. Each
process runs as in a pod with readOnlyRootFilesystem: in a private mount namespace (`unshare`,
as root) where / is read-only and only its /tmp (and the Job's claim) are writable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from tests.deploy.dockerfile import Stage, stages
from tests.deploy.manifests import ROOT, container, one, render
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


def _read_only_root(command: list[str], writable: list[Path]) -> list[str]:
    """`command` in a private mount namespace where / is read-only and only `writable` is not,
    as in a pod with readOnlyRootFilesystem and emptyDir/PVC mounts. Everything execs, so
    signals reach the program itself."""
    script = (
        'for dir in "$@"; do [ "$dir" = -- ] && break; mount --bind "$dir" "$dir"; done; '
        "mount -o remount,bind,ro / && "
        'while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
    )
    folders = [str(folder) for folder in writable]
    return ["unshare", "--mount", "sh", "-c", script, "sh", *folders, "--", *command]


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


def _image_files(context: Path, root: Path) -> Path:
    """The serve stage's own files under `root`/opt: the script and the model repository."""
    opt = root / "opt"
    shutil.copytree(model_repository(root / "models-source"), opt / "models")
    shutil.copy2(context / "deploy" / "image.sh", opt / "image.sh")
    return opt


def _image_environment(venv: Path, writable_tmp: Path) -> dict[str, str]:
    """The image's ENV with its paths moved: the venv's bin first, HOME and caches in /tmp."""
    environ = {k: v for k, v in stages()["serve"].env().items() if k not in ("PATH", "VIRTUAL_ENV")}
    writable_tmp.mkdir(exist_ok=True)
    return environ | {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(writable_tmp),
        "TMPDIR": str(writable_tmp),
        "XDG_CACHE_HOME": str(writable_tmp / ".cache"),
    }


def _entrypoint(opt: Path) -> list[str]:
    entrypoint = stages()["serve"].exec_form("ENTRYPOINT")
    assert entrypoint[:2] == ["/bin/sh", "/opt/cvae/image.sh"]
    return ["/bin/sh", str(opt / "image.sh"), *entrypoint[2:]]


def _server_environment(venv: Path, opt: Path, writable_tmp: Path) -> dict[str, str]:
    """A server pod's environment: the image's, then the base ConfigMap, then local paths."""
    return (
        _image_environment(venv, writable_tmp)
        | one(render("base"), "ConfigMap")["data"]
        | {
            "CVAE_HOST": "127.0.0.1",
            "CVAE_MODEL_REPOSITORY": str(opt / "models"),
            "CVAE_CPUS": "1",
            "CVAE_GRACE_PERIOD_S": "5",
        }
    )


def test_the_read_only_root_is_read_only_but_for_its_tmp(
    serving_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    """The mount namespace the next tests run in refuses writes outside the writable folders."""
    _, venv = serving_venv
    writable = tmp_path / "tmp"
    writable.mkdir()
    probe = f"touch {writable}/ok && touch {venv}/bin/not-ok"
    result = subprocess.run(
        _read_only_root(["sh", "-c", probe], [writable]), capture_output=True, text=True
    )
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result.stderr
    assert (writable / "ok").exists()
    assert not (venv / "bin" / "not-ok").exists()


def test_the_entrypoint_serves_on_a_read_only_root_with_the_pod_settings(
    serving_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    context, venv = serving_venv
    opt = _image_files(context, tmp_path)
    writable_tmp = tmp_path / "tmp"
    environ = _server_environment(venv, opt, writable_tmp)
    command = _read_only_root(
        [*_entrypoint(opt), *stages()["serve"].exec_form("CMD")], writable=[writable_tmp]
    )
    with running_server(command, environ, tmp_path / "server.log", cwd=writable_tmp) as server:
        assert server.health("") == health_pb2.HealthCheckResponse.SERVING
        response = server.generate(list(range(10)), seed=7)
        assert list(response.images.shape[:1]) == [10]
        assert list(response.labels) == list(range(10))
        assert response.model_name
        process = server.process
    # SIGTERM reached the server itself (everything execs) and it drained cleanly.
    assert process.returncode == 0, (tmp_path / "server.log").read_text()


def _pod_arguments(job: dict, environ: dict[str, str], replacements: dict[str, str]) -> list[str]:
    """The Job container's args as the kubelet runs them ($(VAR) expanded), paths replaced."""
    args = [re.sub(r"\$\((\w+)\)", lambda m: environ[m[1]], a) for a in container(job)["args"]]
    for old, new in replacements.items():
        args = [arg.replace(old, new) for arg in args]
    return args


def test_the_generate_and_merge_jobs_run_in_the_image_against_the_server(
    serving_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    """The Jobs' own arguments, shard by shard, with a smaller size: one dataset comes out."""
    context, venv = serving_venv
    opt = _image_files(context, tmp_path)
    server_environ = _server_environment(venv, opt, tmp_path / "server-tmp")
    generate, merge = one(render("jobs/generate"), "Job"), one(render("jobs/merge"), "Job")
    data = tmp_path / "data"
    data.mkdir()
    per_label = 5
    with running_server(
        [*_entrypoint(opt), "serve"], server_environ, tmp_path / "server.log", cwd=tmp_path
    ) as server:
        replacements = {
            "dns:///cvae-headless:50051": f"dns:///127.0.0.1:{server.port}",
            "/data/": f"{data}/",
        }
        for index in range(generate["spec"]["completions"]):
            environ = _image_environment(venv, tmp_path / f"pod-{index}-tmp")
            environ["JOB_COMPLETION_INDEX"] = str(index)  # set by the Job controller
            for variable in container(generate)["env"]:
                if "value" in variable:
                    environ[variable["name"]] = variable["value"]
                else:  # the completion-index annotation, through the downward API
                    environ[variable["name"]] = str(index)
            args = _pod_arguments(generate, environ, replacements)
            args[args.index("--per-label") + 1] = str(per_label)
            _run_pod(opt, args, environ, tmp_path)
    environ = _image_environment(venv, tmp_path / "merge-tmp")
    args = _pod_arguments(merge, environ, {"/data/": f"{data}/"})
    _run_pod(opt, args, environ, tmp_path)
    out = Path(args[args.index("--out") + 1])
    with np.load(out) as dataset:
        labels = dataset["labels"]
        assert dataset["images"].shape == (10 * per_label, 28, 28)
    assert sorted(np.bincount(labels).tolist()) == [per_label] * 10


def _run_pod(opt: Path, args: list[str], environ: dict[str, str], cwd: Path) -> None:
    """One Job pod: read-only root, writable /tmp (its TMPDIR) and the dataset claim."""
    writable = [Path(environ["TMPDIR"]), cwd / "data"]
    result = subprocess.run(
        _read_only_root([*_entrypoint(opt), *args], writable),
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
