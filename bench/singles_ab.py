"""64 concurrent single-image calls through cvae.v1 and the OIP against one `cvae serve`,
alternating, with the server's CPU per call; optionally PyTriton on the same graph first.

`python -m bench.singles_ab [--seconds 8] [--rounds 2] [--triton]`. Extra `CVAE_*` variables
reach the server (for example `CVAE_MAX_CONCURRENT_RPCS=-1`: the call guard without its limit),
so a setting's per-call cost is measured in one run. `make bench` measures the same scenario
among the others; this is the short A/B for one question.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import scenarios, triton_bench
from bench.scenarios import Scenario, Timing
from bench.servers import ServiceConfig, cvae_service, grpc_serving, logged_serving, running
from bench.service_bench import STARTUP_TIMEOUT_S, targets
from modelrepo import newest_spec

_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=_ROOT / "models")
    parser.add_argument("--model-name", default="cvae-mnist")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--triton", action="store_true", help="PyTriton first (.venv-triton)")
    parser.add_argument("--work", type=Path, default=_ROOT / "bench" / "results" / "singles-ab")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    model = newest_spec(args.repository, args.model_name)
    timing = Timing(args.seconds, 1.0)
    scenario = Scenario("singles-c64-uint8", 64, 1)
    if args.triton:
        triton = triton_bench.run(model, [scenario], timing=timing, work=args.work,
                                  venv=_ROOT / ".venv-triton", max_batch=256,
                                  intra_op_threads=2, progress=print)  # fmt: skip
        for row in triton.get("rows", []):
            _print("triton", 0, row)
    server, port, metrics_port = cvae_service(
        model, ServiceConfig(batching=True), args.work / "cvae.log", 0
    )
    ready = grpc_serving(port)
    with running(server, lambda: ready() and logged_serving(server.log_path, 1)(),
                 STARTUP_TIMEOUT_S):  # fmt: skip
        pid = server.pid
        pair = targets(model, "default", port, metrics_port, args.work)
        for round_ in range(args.rounds):
            for target in pair:
                (row,) = scenarios.run_plan(target, [scenario], timing, pid, lambda _: None)
                _print(target.server, round_, row)
    return 0


def _print(server: str, round_: int, row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"{server:13s} round {round_}: {row['error']}")
        return
    rate, cores = float(row["images_per_s"]), float(row.get("server_cpu_cores", 0.0))
    print(
        f"{server:13s} round {round_}: {rate:7.0f} images/s, server {cores:.2f} cores, "
        f"{cores / rate * 1e6:4.0f} µs CPU per call, p50 {row.get('p50_ms')} ms",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
