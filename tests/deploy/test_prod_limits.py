"""The prod limits fit the prod memory limit (deploy/limits.py), and hold for real: the server
with the prod ConfigMap, in a memory cgroup of the pod's limit, attacked as the hostile-clients
issue did, is not OOM-killed, keeps answering, and peaks below the limit less the margin."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from service.generator import PixelFormat
from service.servicer import response_bytes
from service.settings import from_sources
from tests.deploy.cgroup import memory_cgroup, unavailable
from tests.deploy.manifests import ROOT, one, render
from tests.deploy.models import SHIPPED
from tests.deploy.server import RunningServer, running_server
from tests.service.rawh2 import RawConnection, grpc_frame

_MIB = 1 << 20
_GENERATE_STREAM = "/cvae.v1.Generator/GenerateStream"
_RESOURCE_EXHAUSTED = "8"


def _tool() -> ModuleType:
    path = ROOT / "deploy" / "limits.py"
    spec = importlib.util.spec_from_file_location("deploy_limits", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


limits_tool = _tool()


def _prod() -> tuple[int, dict[str, str]]:
    """The prod Deployment's memory limit (MiB) and its ConfigMap."""
    objects = render("overlays/prod")
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    limit = limits_tool.memory_mib(container["resources"]["limits"]["memory"])
    return limit, dict(one(objects, "ConfigMap")["data"])


def test_the_prod_overlay_runs_the_limits_derived_from_its_memory_limit() -> None:
    limit, config = _prod()
    assert limit == limits_tool.prod_memory_limit_mib()
    derived = limits_tool.derive(limit).env()
    assert {name: config.get(name) for name in derived} == derived
    assert limits_tool.main(["--check"]) == 0, "limits.env is stale: run `make prod-limits`"


@pytest.mark.parametrize("memory_mib", [768, 1024, 1536, 2048, 4096, 16384])
def test_every_term_and_the_margin_fit_the_memory_limit(memory_mib: int) -> None:
    limits = limits_tool.derive(memory_mib)
    used = sum(size for _, size in limits.terms)
    assert used <= memory_mib * _MIB * (1 - limits_tool.MARGIN)
    assert limits.margin_bytes >= memory_mib * _MIB * limits_tool.MARGIN
    assert limits.stream_memory_mib >= limits_tool.MIN_STREAM_MEMORY_MIB
    terms = dict(limits.terms)
    assert terms["streams"] >= limits.stream_memory_mib * _MIB * limits_tool.STREAM_COST - _MIB


def test_more_memory_goes_to_the_stream_budget() -> None:
    budgets = [limits_tool.derive(m).stream_memory_mib for m in (768, 1024, 2048, 4096)]
    assert budgets == sorted(budgets) and len(set(budgets)) == len(budgets), budgets


def test_a_limit_too_small_for_the_fixed_terms_is_refused_with_what_to_change() -> None:
    with pytest.raises(limits_tool.LimitsError, match="raise the memory limit or lower"):
        limits_tool.derive(512)
    assert limits_tool.main(["--memory-mib", "512"]) == 2
    assert limits_tool.derive(640, queue_size=2048, max_connections=256).stream_memory_mib > 0


def test_the_derived_settings_are_valid_and_their_largest_answer_fits_one_message() -> None:
    """The service takes them as they are, and a Generate of max_images_per_request float32
    images with latents is under --max-message-bytes (the server would refuse it otherwise)."""
    _, config = _prod()
    settings = from_sources(environ=config)
    assert settings.concurrent_rpcs_limit == settings.max_concurrent_rpcs
    assert settings.max_streams_per_connection > settings.max_concurrent_rpcs

    class Spec:
        image_shape = (28, 28)
        latent_dim = 16

    largest = response_bytes(settings.max_images_per_request, PixelFormat.FLOAT32, False, Spec)
    assert largest <= settings.max_message_bytes, largest


def test_the_model_sizes_are_the_shipped_models() -> None:
    model = limits_tool.Model()
    for path in SHIPPED.glob("*/*/model.json"):
        described = json.loads(path.read_text())
        height, width = described["image_shape"]
        assert (height * width, described["latent_dim"]) == (model.pixels, model.latent_dim), path


# ---- the real server in a memory cgroup of the prod limit


def _resident(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _send_all(connection: RawConnection, stream_id: int, data: bytes) -> None:
    """`data` on `stream_id` as the server's flow-control windows allow, then END_STREAM."""
    sent = 0
    while sent < len(data):
        window = connection.h2.local_flow_control_window(stream_id)
        size = min(window, connection.h2.max_outbound_frame_size, len(data) - sent)
        if size <= 0:
            connection.pump(0.05)  # WINDOW_UPDATEs
            continue
        connection.send(stream_id, data[sent : sent + size])
        connection.flush()
        sent += size
    connection.send(stream_id, b"", end_stream=True)
    connection.flush()


def _queue_depth(server: RunningServer) -> float:
    return sum(value for _, value in server.scrape_values()["cvae_queue_depth"])


def _unread_streams(
    server: RunningServer, count: int, labels: int, queue_size: int
) -> tuple[RawConnection, int, int]:
    """`count` GenerateStream calls of `labels` labels on one raw HTTP/2 connection whose
    window is 0: the server decodes each stream's first chunks and can send none of them. Each
    next stream waits for the queue to drain below half (a slow decoder would refuse it with
    queue_full): the stream budget, not the queue, is what is attacked. Returns the connection
    (close it to end them), how many streams the server holds and how many it refused (with
    RESOURCE_EXHAUSTED: the stream budget, or the queue)."""
    connection = RawConnection("127.0.0.1", server.port, window=0)
    connection.pump(0.2)
    message = grpc_frame(pb.GenerateRequest(labels=[7] * labels, seed=5).SerializeToString())
    for _ in range(count):
        _send_all(connection, connection.open_call(_GENERATE_STREAM), message)
        connection.pump(0.05)
        deadline = time.monotonic() + 10
        while _queue_depth(server) > queue_size / 2 and time.monotonic() < deadline:
            connection.pump(0.1)
    deadline, answered = time.monotonic() + 30, -1
    while time.monotonic() < deadline and connection.answered() != answered:
        answered = connection.answered()  # refusals come at once: wait until no more come
        connection.pump(2.0)
    refused = sum(1 for s in connection.streams.values() if s.status == _RESOURCE_EXHAUSTED)
    others = [s.status for s in connection.streams.values() if s.status not in (None, "8")]
    assert not others, others
    return connection, count - refused, refused


def _fill_queue(target: str, stop: threading.Event, images: int, callers: int) -> list[int]:
    """`callers` threads sending Generate calls of `images` float32 images with latents, back
    to back, until `stop`; returns [answered, refused]."""
    counts = [0, 0]
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
    stub = pb_grpc.GeneratorStub(channel)
    request = pb.GenerateRequest(labels=[3] * images, seed=1)

    def caller() -> None:
        while not stop.is_set():
            try:
                stub.Generate(request, timeout=60)
                counts[0] += 1
            except grpc.RpcError:
                counts[1] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=90)
    channel.close()
    return counts


def _victim_is_served(server: RunningServer, within_s: float = 30) -> None:
    """Health says SERVING, and a fresh Generate gets its images (retried on RESOURCE_EXHAUSTED
    while the queue drains)."""
    deadline = time.monotonic() + within_s
    while True:
        assert server.health() == 1  # SERVING
        try:
            assert list(server.generate([4, 2]).labels) == [4, 2]
            return
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert time.monotonic() < deadline, error
            time.sleep(0.5)


def _victim_is_answered(server: RunningServer) -> str:
    """Health says SERVING and a fresh Generate gets an answer: its images, or (the queue full
    of the attacker's calls) a prompt RESOURCE_EXHAUSTED to retry on."""
    assert server.health() == 1
    try:
        server.generate([4, 2])
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        return error.details() or ""
    return "OK"


@pytest.mark.timeout(300)
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_the_prod_limits_hold_the_hostile_memory_pattern_in_a_cgroup_of_the_pod_limit(
    tmp_path: Path,
) -> None:
    limit_mib, config = _prod()
    limits = limits_tool.derive(limit_mib)
    usable_mib = limit_mib * (1 - limits_tool.MARGIN)
    environ = config | {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CVAE_HOST": "127.0.0.1",
        "CVAE_MODEL_REPOSITORY": str(SHIPPED),
        "CVAE_CPUS": "2",
        "CVAE_LOG_FORMAT": "text",
        "CVAE_LOG_LEVEL": "WARNING",
    }
    with memory_cgroup(limit_mib * _MIB, "cvae-prod-limits") as cgroup:
        command = cgroup.command([sys.executable, "-m", "cvae", "serve"])
        with running_server(command, environ, tmp_path / "server.log", cwd=ROOT) as server:
            pid = server.process.pid
            server.generate(list(range(10)) * 100)  # warm: the decoder's arenas at full size
            baseline = _resident(pid, "VmHWM")
            # Which part of it is the process's own memory and which mapped files (libraries,
            # model files): what to look at when the baseline moves.
            split = {field: round(_resident(pid, field), 1) for field in ("RssAnon", "RssFile")}
            # The streams first (the queue-filling calls would refuse them with queue_full),
            # then the queue filled beside them.
            held, opened, refused = _unread_streams(server, 100, 2_000_000, limits.queue_size)
            stop = threading.Event()
            answers: list[list[int]] = []
            filler = threading.Thread(
                target=lambda: answers.append(
                    _fill_queue(server.target, stop, limits.max_images_per_request, 16)
                )
            )
            filler.start()
            try:
                time.sleep(6)
                during = _victim_is_answered(server)
                alive_under_attack = server.process.poll() is None
            finally:
                stop.set()
                filler.join(timeout=120)
            _victim_is_served(server)  # the unread streams still open
            peak = _resident(pid, "VmHWM")
            held.close()
            _victim_is_served(server)
            counted = server.scrape_values()["cvae_refusals_total"]
        oom_kills = cgroup.oom_kills()
        charged = cgroup.peak_bytes() / _MIB
    report = {
        "baseline_mib": round(baseline, 1), "baseline_split_mib": split,
        "peak_mib": round(peak, 1),
        "cgroup_peak_mib": round(charged, 1), "usable_mib": usable_mib,
        "streams_opened": opened, "streams_refused": refused,
        "generate": answers, "victim_during": during,
        "refusals": {labels["reason"]: value for labels, value in counted if value},
    }  # fmt: skip
    print("prod limits under attack:", report)
    assert oom_kills == 0 and alive_under_attack, report
    assert baseline <= limits_tool.BASELINE_MIB, report
    assert peak <= usable_mib, report
    # The attack reached the bounds: the stream budget refused streams, and the queue-filling
    # calls were refused for saturation too: the queue full, or (their answers count in the
    # same budget since unread answers do) the stream budget the unread streams hold.
    assert opened + refused == 100 and opened > 0, report
    assert report["refusals"].get("stream_memory", 0) > 0, report
    refusals = report["refusals"]
    flood_refused = refusals.get("queue_full", 0) + refusals.get("stream_memory", 0) - refused
    assert flood_refused > 0, report
