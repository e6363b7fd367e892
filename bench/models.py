"""The shipped models side by side through one real `cvae serve` on models/ (as `make serve` runs
it: every model loaded, cvae-mnist the default): images/s of 256-image Generate calls and the
latency of one-image calls, per model by `model_name`, next to each model's decoder FLOPs and the
evaluator's metrics from its model.json.

    python -m bench.models                # ~2 minutes; writes docs/models.md and docs/models.json
    python -m bench.models --seconds 2    # a quicker, noisier run

Each model.json carries the evaluation made when it was published; the evaluator's judges (its
classifiers) are trained once per machine and cache, so two models evaluated apart may be scored
by different judges. `--metrics NAME=PATH` (a metrics.json of `cvae evaluate`, e.g. of
`cvae evaluate --onnx models/cvae-mnist/3`) adds a column of that evaluation beside them.

The models are measured in alternating rounds (A, B, A, B, ...) on the same server, so a change
of the machine's load during the run falls on both; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import onnxruntime as ort

from bench.floor import describe_model, session, timed_rate
from bench.machine import describe, load_average, repository_path
from bench.markdown import table
from bench.model import random_feeds
from bench.servers import ServerProcess, free_port, grpc_serving, running
from bench.stats import back_to_back, summarize_latencies
from cvae.v1 import generator_pb2 as pb
from cvae.v1 import generator_pb2_grpc as pb_grpc
from modelrepo import ModelRepository, newest_spec

_LOGGER = logging.getLogger("bench.models")
_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "cvae-mnist"
BATCH = 256
CALLERS = 2
"""Concurrent 256-image callers: one call is decoded while the other's answer is encoded."""
_METRICS = (
    ("label_accuracy", "label accuracy"),
    ("label_accuracy_worst", "worst label"),
    ("frechet_ratio", "Fréchet × floor"),
    ("second_classifier.frechet_ratio", "Fréchet × floor (2nd judge)"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("test_negative_elbo", "test −ELBO (nats)"),
    ("iw_negative_log_likelihood", "IW bound (nats)"),
    ("iw_images", "IW bound on images"),
    ("cas_accuracy", "CAS: sample-trained CNN on real test digits"),
    ("cas_gap_points", "CAS gap to the real-trained CNN, points"),
)


def _throughput(stub: pb_grpc.GeneratorStub, name: str, seconds: float) -> float:
    """Images/s of CALLERS threads each sending 256-image calls back to back for `seconds`."""
    request = pb.GenerateRequest(labels=[k % 10 for k in range(BATCH)], model_name=name)
    request.omit_latents = True
    for _ in range(2):
        stub.Generate(request, timeout=60)  # warm
    calls, elapsed = back_to_back(lambda: stub.Generate(request, timeout=60), seconds, CALLERS)
    return calls * BATCH / elapsed


def _latencies(stub: pb_grpc.GeneratorStub, name: str, calls: int) -> list[float]:
    """Milliseconds of `calls` one-image Generate calls, one at a time."""
    durations = []
    for seed in range(calls + 5):
        request = pb.GenerateRequest(labels=[seed % 10], seed=seed, model_name=name)
        before = time.perf_counter()
        stub.Generate(request, timeout=30)
        if seed >= 5:  # the first few warm the channel and the model
            durations.append((time.perf_counter() - before) * 1000)
    return durations


def _metric(metrics: dict[str, Any], dotted: str) -> Any:
    value: Any = metrics
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    names = ModelRepository(args.repository).model_names()
    specs = {name: newest_spec(args.repository, name) for name in names}
    port = free_port()
    server = ServerProcess(
        "cvae serve",
        [sys.executable, "-m", "cvae", "serve", "--model-repository", str(args.repository),
         "--model-name", DEFAULT_MODEL, "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", "0", "--reload-interval-s", "0"],
        work / "server.log",
    )  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in names}
    latencies: dict[str, list[float]] = {name: [] for name in names}
    started_load = load_average()
    with running(server, grpc_serving(port), 300), grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.GeneratorStub(ch)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        for round_index in range(args.rounds):
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                rates[name].append(_throughput(stub, name, args.seconds))
                latencies[name] += _latencies(stub, name, args.latency_calls)
                _LOGGER.info("round %d %s: %.0f images/s", round_index, name, rates[name][-1])
    in_process = {}
    for name, spec in specs.items():  # the decoder alone, in this process
        decoder = session(spec.onnx_path, threads=args.ort_threads)
        feeds = random_feeds(spec, BATCH)
        outputs = [spec.image_output]

        def decode(d: ort.InferenceSession = decoder, f: Any = feeds, o: Any = outputs) -> object:
            return d.run(o, f)

        in_process[name] = timed_rate(
            decode,
            BATCH,
            variant=name,
            threads=args.ort_threads,
            opt_level="all",
            min_seconds=args.seconds,
            flops_per_image=None,
        ).images_per_s
    evaluations = {}
    for entry in args.metrics:
        name, _, path = entry.partition("=")
        scores = json.loads(Path(path).read_text())
        evaluations[f"{name} ({repository_path(Path(path))})"] = {
            key: _metric(scores, key) for key, _ in _METRICS
        }
    models = {}
    for name, spec in specs.items():
        cost = describe_model(spec)
        summary = summarize_latencies(latencies[name])
        models[name] = {
            "version": spec.version,
            "onnx": repository_path(spec.onnx_path),
            "decoder_mflops_per_image": (
                round(cost.flops_per_image / 1e6, 2) if cost.flops_per_image else None
            ),
            "served_images_per_s_batch_256": round(statistics.median(rates[name])),
            "served_images_per_s_rounds": [round(r) for r in rates[name]],
            "in_process_images_per_s_batch_256": round(in_process[name]),
            "single_image_latency_ms": {
                "p50": round(summary.p50_ms, 2),
                "p90": round(summary.p90_ms, 2),
                "p99": round(summary.p99_ms, 2),
                "calls": summary.count,
            },
            "metrics": {key: _metric(spec.document.get("metrics", {}), key) for key, _ in _METRICS},
        }
    return {
        "command": "python -m bench.models " + " ".join(args.argv),
        "machine": describe(),
        "load_average_at_end": load_average(),
        "load_average_at_start": started_load,
        "server": {
            "default_model": info.default_model,
            "available_models": list(info.available_models),
            "settings": "`cvae serve`'s defaults and --model-name cvae-mnist: every model loaded",
        },
        "setup": {
            "throughput": f"{CALLERS} callers of {BATCH}-image Generate calls (UINT8, no "
            f"latents), {args.seconds:g} s per model per round",
            "latency": f"{args.latency_calls} one-image Generate calls one at a time per round",
            "rounds": args.rounds,
            "in_process": f"onnxruntime in the bench's process, {args.ort_threads} thread(s), "
            f"batch {BATCH}",
        },
        "models": models,
        "evaluations": evaluations,
    }


def render(results: dict[str, Any]) -> str:
    models = results["models"]
    names = list(models)
    machine = results["machine"]
    base = models.get(DEFAULT_MODEL)

    def ratio(name: str, key: str) -> str:
        if base is None or name == DEFAULT_MODEL:
            return ""
        return f" ({models[name][key] / base[key]:.1f}×)"

    speed = [
        ("version", lambda n: models[n]["version"]),
        ("decoder MFLOP / image", lambda n: models[n]["decoder_mflops_per_image"]),
        (
            "served images/s, 256-image calls",
            lambda n: (
                f"{models[n]['served_images_per_s_batch_256']:,}"
                + ratio(n, "served_images_per_s_batch_256")
            ),
        ),
        (
            "in-process onnxruntime images/s, batch 256",
            lambda n: (
                f"{models[n]['in_process_images_per_s_batch_256']:,}"
                + ratio(n, "in_process_images_per_s_batch_256")
            ),
        ),
        ("one-image call p50 ms", lambda n: models[n]["single_image_latency_ms"]["p50"]),
        ("one-image call p99 ms", lambda n: models[n]["single_image_latency_ms"]["p99"]),
    ]
    scores = {f"{n} (model.json)": models[n]["metrics"] for n in names}
    scores |= results.get("evaluations", {})
    quality = [
        (label, [column[key] for column in scores.values()])
        for key, label in _METRICS
        if any(column[key] is not None for column in scores.values())
    ]
    lines = [
        "# The shipped models side by side",
        "",
        f"`{results['command'].strip()}`, run {machine['measured_at']} on {machine['cpu_model']} "
        f"({machine['usable_cores']} usable cores, load average "
        f"{results['load_average_at_start'][0]:.1f} at the start, "
        f"{results['load_average_at_end'][0]:.1f} at the end): one real `cvae serve` on "
        f"`models/` ({results['server']['settings']}), each model called by `model_name`. "
        "Every number below comes from docs/models.json, which that command rewrites. The "
        "quality rows are the evaluator's (`cvae evaluate`): as each model.json records them "
        "and, where a column says so, a later evaluation given with `--metrics` (the judges "
        "of evaluations made apart may differ: this one is scored by this machine's).",
        "",
        f"Throughput: {results['setup']['throughput']}; latency: {results['setup']['latency']}; "
        f"{results['setup']['rounds']} rounds, models alternating, medians shown. In process: "
        f"{results['setup']['in_process']}.",
        "",
        table(["", *names], [[label, *(get(n) for n in names)] for label, get in speed]),
        "",
        table(["evaluator", *scores], [[label, *values] for label, values in quality]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=_ROOT / "models")
    parser.add_argument("--seconds", type=float, default=5.0, help="per model per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--latency-calls", type=int, default=200, help="per model per round")
    parser.add_argument("--ort-threads", type=int, default=1, help="in-process onnxruntime")
    parser.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a metrics.json of `cvae evaluate` for model NAME, shown beside the model.json ones",
    )
    parser.add_argument("--out", type=Path, default=_ROOT / "docs" / "models.md")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as folder:
        results = measure(args, Path(folder))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.write_text(render(results))
    _LOGGER.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
