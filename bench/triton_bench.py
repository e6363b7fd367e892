"""Part 3 of the bench: NVIDIA Triton (through PyTriton) serving the same ONNX, same scenarios."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.frames import KSERVE_INFER_PATH
from bench.grpccheck import CallCounter, triton_counts
from bench.scenarios import Scenario, Target, Timing
from bench.servers import ServerProcess, free_port, http_ok, running
from bench.triton_env import TritonEnv, TritonEnvError, ensure
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "cvae"
STARTUP_TIMEOUT_S = 420  # PyTriton may take 5 min to load the model on a busy machine
MAX_DELAY_US = 2000


def _frame_writer(env: TritonEnv, folder: Path, latent_dim: int) -> Callable[[int, str], Path]:
    def frame(images: int, encoding: str) -> Path:
        if encoding != "UINT8":
            raise ValueError("Triton returns the tensor only; there is no PNG encoding to ask for")
        path = folder / f"triton-{images}-z{latent_dim}.bin"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _in_env(env, "frame", "--images", str(images), "--latent-dim", str(latent_dim),
                    "--out", str(path))  # fmt: skip
        return path

    return frame


def _in_env(env: TritonEnv, *args: str) -> str:
    completed = subprocess.run(
        [str(env.python), "-m", "bench.triton_client", *args],
        capture_output=True, text=True, cwd=_ROOT, env=_environ(env), timeout=120, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        raise RuntimeError(
            f"bench.triton_client {args[0]} failed: {completed.stdout}{completed.stderr[-2000:]}"
        )
    return completed.stdout


def _environ(env: TritonEnv) -> dict[str, str]:
    import os

    return {**os.environ, **env.environment()}


def run(
    model: ModelSpec,
    plan: list[Scenario],
    *,
    timing: Timing,
    work: Path,
    venv: Path,
    max_batch: int,
    intra_op_threads: int,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Everything measured on Triton, or a section whose `error` says why Triton could not run."""
    config = f"PyTriton dynamic batcher ≤{max_batch} images, ≤{MAX_DELAY_US / 1000:g} ms"
    section: dict[str, Any] = {"config": config, "rows": []}
    try:
        progress("Triton: preparing .venv-triton")
        env = ensure(venv)
    except TritonEnvError as error:
        section["error"] = f"Triton environment: {error}"
        return section
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    workspace = work / "triton-workspace"
    args = [
        str(env.python), str(_ROOT / "bench" / "triton_model.py"),
        "--onnx", str(model.onnx_path), "--latent-dim", str(model.latent_dim),
        "--image-height", str(model.image_shape[0]), "--image-width", str(model.image_shape[1]),
        "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        "--metrics-port", str(metrics_port), "--max-batch", str(max_batch),
        "--max-delay-us", str(MAX_DELAY_US), "--intra-op-threads", str(intra_op_threads),
        "--workdir", str(workspace),
    ]  # fmt: skip
    server = ServerProcess(
        "triton",
        args,
        work / "logs" / "triton.log",
        env=env.environment(),
        stop_signal=signal.SIGTERM,
    )
    ready = http_ok(f"http://127.0.0.1:{http_port}/v2/models/{MODEL_NAME}/ready")
    try:
        progress("Triton: starting")
        with running(server, ready, STARTUP_TIMEOUT_S) as seconds_to_ready:
            section["seconds_to_ready"] = seconds_to_ready
            section["checks"] = [
                json.loads(_in_env(env, "check", "--port", str(grpc_port), "--images", str(images),
                                   "--latent-dim", str(model.latent_dim)))
                for images in (1, 256)
            ]  # fmt: skip
            target = Target(
                server="triton",
                config=config,
                url=f"http://127.0.0.1:{grpc_port}{KSERVE_INFER_PATH}",
                frame=_frame_writer(env, work / "frames", model.latent_dim),
                counter=CallCounter(
                    f"http://127.0.0.1:{metrics_port}/metrics", triton_counts(MODEL_NAME)
                ),
            )
            pid = server.pid  # Triton, its Python backend stub and PyTriton's proxy
            section["rows"] = scenarios.run_plan(target, plan, timing, pid, progress)
    except Exception as error:  # Triton failing must not lose the rest of the bench
        _LOGGER.exception("Triton failed")
        section["error"] = f"{type(error).__name__}: {error}"
    finally:
        # PyTriton copies Triton's binaries and backends there (tens of MB): scratch only.
        shutil.rmtree(workspace, ignore_errors=True)
    return section
