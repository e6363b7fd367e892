"""`python -m bench.workers_ab`: `cvae serve` with 1 worker against 2 workers, back to back.

On a shared machine two runs minutes apart are not comparable; this alternates the two
configurations round by round in one run (same model, same h2load scenarios as `make bench`) and
prints each round's ratio. It also prints how the server's CPU split over the worker processes:
the kernel assigns each TCP connection to one worker (SO_REUSEPORT hashing), so with few
connections the split is often uneven, and h2load's connection count (`--connections`, the
bench uses 4) matters as much as the worker count.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import frames, h2load, profile
from bench.servers import ServiceConfig, cvae_service, grpc_serving, logged_serving, running
from bench.service_bench import STARTUP_TIMEOUT_S, frame_writer
from modelrepo import newest_spec

_LOGGER = logging.getLogger(__name__)
_SCENARIOS = ((64, 1), (2, 256))  # (concurrent callers, images per call)


def _round(model: Any, workers: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    extra = tuple(args.workers_args.split()) if workers > 1 else ()
    config = ServiceConfig(batching=True, workers=workers, extra_args=extra)
    server, port, _ = cvae_service(model, config, work / f"cvae-{workers}w.log")
    frame = frame_writer(work / "frames", model.num_classes)
    rows = []
    ready, every_worker = grpc_serving(port), logged_serving(server.log_path, workers)
    with running(server, lambda: ready() and every_worker(), STARTUP_TIMEOUT_S):
        assert server.process is not None
        for concurrency, images in _SCENARIOS:
            before = profile.children_cpu_seconds(server.process.pid)
            result = h2load.run(
                f"http://127.0.0.1:{port}{frames.GENERATE_PATH}",
                frame(images, "UINT8"),
                concurrency=concurrency,
                images_per_request=images,
                duration_s=args.seconds,
                warmup_s=1.0,
                max_connections=args.connections,
            )
            after = profile.children_cpu_seconds(server.process.pid)
            used: list[float] = sorted(
                (
                    after[pid] - before.get(pid, 0.0)
                    for pid in after
                    if after[pid] > before.get(pid, 0.0)
                ),
                reverse=True,
            )
            total = sum(used)
            split = [share / total for share in used] if workers > 1 and total > 0 else []
            rows.append(
                {
                    "workers": workers,
                    "scenario": f"{concurrency}x{images}",
                    "images_per_s": result.images_per_s,
                    "p50_ms": result.latency.p50_ms,
                    "p99_ms": result.latency.p99_ms,
                    "cpu_split": split,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=4, help="h2load connections at most")
    parser.add_argument(
        "--workers-args", default="", help="more `cvae serve` flags for the 2-worker server"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = newest_spec(args.model_repository)
    ratios: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="workers-ab-") as scratch:
        for number in range(1, args.rounds + 1):
            one = _round(model, 1, args, Path(scratch))
            two = _round(model, 2, args, Path(scratch))
            for a, b in zip(one, two, strict=True):
                ratio = b["images_per_s"] / a["images_per_s"]
                ratios.setdefault(a["scenario"], []).append(ratio)
                split = "/".join(f"{share:.0%}" for share in b["cpu_split"])
                print(
                    f"round {number} {a['scenario']:>7}: 1 worker {a['images_per_s']:7.0f} img/s "
                    f"p99 {a['p99_ms']:6.1f} ms | 2 workers {b['images_per_s']:7.0f} img/s "
                    f"p99 {b['p99_ms']:6.1f} ms (CPU split {split}) | ratio {ratio:.2f}"
                )
    for scenario, values in ratios.items():
        print(
            f"{scenario}: 2 workers / 1 worker median {statistics.median(values):.2f} "
            f"(rounds: {', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
