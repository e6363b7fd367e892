"""Part 2 of the bench: the gRPC service end to end, per configuration and scenario."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import client_checks, frames, h2load, profile, scenarios
from bench.grpccheck import CallCounter, cvae_counts
from bench.scenarios import Scenario, Target, Timing
from bench.servers import (
    ServerProcess,
    ServiceConfig,
    cvae_service,
    free_port,
    grpc_serving,
    logged_serving,
    running,
)
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 60


def frame_writer(folder: Path, num_classes: int) -> Callable[[int, str], Path]:
    """Prebuilt Generate frames, one file per (images, encoding), written once."""

    def frame(images: int, encoding: str) -> Path:
        path = folder / f"cvae-{images}-{encoding.lower()}-k{num_classes}.bin"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(frames.generate_frame(images, encoding, num_classes=num_classes))
        return path

    return frame


def oip_frame_writer(folder: Path, model: ModelSpec) -> Callable[[int, str], Path]:
    """Prebuilt ModelInfer frames for the same work as `frame_writer`'s (UINT8 images)."""

    def frame(images: int, encoding: str) -> Path:
        if encoding != "UINT8":
            raise ValueError("the OIP bench asks for UINT8 images only")
        path = folder / f"oip-{model.name}-{images}-k{model.num_classes}.bin"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(frames.infer_frame(model.name, images, num_classes=model.num_classes))
        return path

    return frame


def oip_http(
    port: int,
    model: ModelSpec,
    scenario: Scenario,
    timing: Timing,
    work: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """One scenario through POST /v2/models/NAME/infer (JSON, HTTP/1.1: one connection per
    concurrent call), after one real call checked for its image output."""
    progress(f"cvae OIP HTTP: {scenario.describe()}")
    url = f"http://127.0.0.1:{port}/v2/models/{model.name}/infer"
    body = work / "frames" / f"oip-{model.name}-{scenario.images_per_request}.json"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_bytes(
        frames.infer_json(model.name, scenario.images_per_request, num_classes=model.num_classes)
    )
    row: dict[str, Any] = {
        "server": "cvae OIP HTTP",
        "scenario": scenario.name,
        "concurrency": scenario.concurrency,
        "images_per_request": scenario.images_per_request,
        "tool": "h2load --h1",
    }
    request = urllib.request.Request(
        url, data=body.read_bytes(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    shape = answer["outputs"][0]["shape"]
    if shape != [scenario.images_per_request, *model.image_shape]:
        row["error"] = f"one-call check: image shape {shape}"
        return row
    try:
        result = h2load.run(
            url,
            body,
            concurrency=scenario.concurrency,
            images_per_request=scenario.images_per_request,
            duration_s=timing.duration_s,
            warmup_s=timing.warmup_s,
            headers=("content-type: application/json",),
            http1=True,
        )
    except h2load.H2loadError as error:
        row["error"] = str(error)
        return row
    row.update(result.as_dict())
    return row


def targets(
    model: ModelSpec, config: str, port: int, metrics_port: int, work: Path
) -> tuple[Target, Target]:
    """The two load targets of one running `cvae serve`: cvae.v1 Generate and the OIP's
    ModelInfer over gRPC, each with its frames and the server's own call counts."""
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    generate = Target(
        server="cvae",
        config=config,
        url=f"http://127.0.0.1:{port}{frames.GENERATE_PATH}",
        frame=frame_writer(work / "frames", model.num_classes),
        counter=CallCounter(metrics_url, cvae_counts("Generate")),
    )
    infer = Target(
        server="cvae OIP gRPC",
        config=config,
        url=f"http://127.0.0.1:{port}{frames.KSERVE_INFER_PATH}",
        frame=oip_frame_writer(work / "frames", model),
        counter=CallCounter(metrics_url, cvae_counts("ModelInfer")),
    )
    return generate, infer


def run_config(
    model: ModelSpec,
    config: ServiceConfig,
    plan: list[Scenario],
    *,
    timing: Timing,
    work: Path,
    stream_images: int = 0,
    profile_seconds: float = 0.0,
    oip_plan: list[Scenario] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Start `cvae serve` with `config`, run `plan` through cvae.v1 (and the stream and profile
    if asked), and `oip_plan` through the Open Inference Protocol over gRPC and HTTP."""
    slug = config.label().replace(" ", "").replace(",", "_").replace("≤", "").replace("/", "-")
    http_port = free_port() if oip_plan else 0
    server, port, metrics_port = cvae_service(
        model, config, work / "logs" / f"cvae-{slug}.log", http_port
    )
    section: dict[str, Any] = {"config": config.label(), "rows": []}
    started = time.monotonic()
    try:
        serving, every_worker = grpc_serving(port), logged_serving(server.log_path, config.workers)
        with running(server, lambda: serving() and every_worker(), STARTUP_TIMEOUT_S):
            section["seconds_to_serving"] = time.monotonic() - started
            section["checks"] = [
                client_checks.check_generate(port, images, encoding, model.image_shape)
                for images, encoding in ((1, "UINT8"), (256, "UINT8"), (4, "PNG"))
            ]
            pid = server.pid
            target, oip = targets(model, config.label(), port, metrics_port, work)
            section["rows"] = scenarios.run_plan(target, plan, timing, pid, progress)
            section["rss_mib_after_load"] = profile.group_rss_mib(pid)
            if oip_plan:
                section["oip_grpc_rows"] = scenarios.run_plan(oip, oip_plan, timing, pid, progress)
                section["oip_http_rows"] = [
                    oip_http(http_port, model, scenario, timing, work, progress)
                    for scenario in oip_plan
                ]
            if stream_images:
                progress(f"cvae {config.label()}: one stream of {stream_images} images")
                section["stream"] = client_checks.stream(port, stream_images, model.image_shape)
            if profile_seconds:
                section["profiles"] = _profiles(target, pid, profile_seconds, work)
    except Exception as error:  # one configuration failing must not lose the others' numbers
        _LOGGER.exception("service configuration %s failed", config.label())
        section["error"] = f"{type(error).__name__}: {error}"
    return section


def _profiles(target: Target, pid: int, seconds: float, work: Path) -> dict[str, Any]:
    """py-spy under 64 concurrent single-image calls (every thread, then the GIL holder with
    native frames), and under one call at a time."""
    results = {}
    for concurrency, mode, share in (
        (64, "threads", 1.0),
        (64, "gil-native", 0.5),
        (1, "threads", 1.0),
    ):
        scenario = Scenario(f"profile-c{concurrency}", concurrency, 1)
        length = max(2.0, seconds * share)
        results[f"singles-c{concurrency}-{mode}"] = profile.record_under_load(
            pid,
            functools.partial(scenarios.run, target, scenario, Timing(length, 0.0)),
            seconds=length,
            out=work / "profiles" / f"cvae-singles-c{concurrency}-{mode}.txt",
            mode=mode,
        )
    return results


def run_grpc_floor(
    model: ModelSpec,
    plan: list[Scenario],
    *,
    timing: Timing,
    work: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The same scenarios against bench/echo_server.py: grpc.aio alone, no model, no codec."""
    port = free_port()
    config = "grpc.aio, canned response (no model)"
    server = ServerProcess(
        "echo server",
        [sys.executable, "-m", "bench.echo_server", "--port", str(port)],
        work / "logs" / "echo-server.log",
    )
    section: dict[str, Any] = {"config": config, "rows": []}
    try:
        with running(server, grpc_serving(port), STARTUP_TIMEOUT_S):
            pid = server.pid
            target = Target(
                server="grpc floor",
                config=config,
                url=f"http://127.0.0.1:{port}{frames.GENERATE_PATH}",
                frame=frame_writer(work / "frames", model.num_classes),
                counter=None,
            )
            section["rows"] = scenarios.run_plan(target, plan, timing, pid, progress)
    except Exception as error:  # the floor failing must not lose the rest
        _LOGGER.exception("grpc floor failed")
        section["error"] = f"{type(error).__name__}: {error}"
    return section
