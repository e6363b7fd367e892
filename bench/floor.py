"""The floor: how fast onnxruntime decodes in process, with no server in the way, and what one
image costs in arithmetic."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.machine import repository_path
from bench.model import random_feeds
from bench.stats import percentile
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)
OPT_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
FLOOR_BATCHES = (1, 32, 256, 1024)


@dataclass(frozen=True)
class DecoderCost:
    """The model under test and the arithmetic of one image through its decoder."""

    name: str
    version: str
    onnx: str
    onnx_sha256: str
    latent_dim: int
    image_shape: tuple[int, ...]
    flops_per_image: int | None
    """torch's FLOP counter (a multiply-add is 2) on the decoder model.json's training
    configuration describes (training/describe.py); None when model.json has none."""
    metrics_in_model_json: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_model(model: ModelSpec) -> DecoderCost:
    from training.config import ModelConfig  # torch: imported only when the bench measures
    from training.describe import model_costs

    described = model.document.get("training_config", {}).get("model")
    costs = model_costs(ModelConfig(**described)) if described else None
    return DecoderCost(
        name=model.name,
        version=model.version,
        onnx=repository_path(model.onnx_path),
        onnx_sha256=hashlib.sha256(model.onnx_path.read_bytes()).hexdigest(),
        latent_dim=model.latent_dim,
        image_shape=tuple(model.image_shape),
        flops_per_image=round(costs["decoder_mflops_per_image"] * 1e6) if costs else None,
        metrics_in_model_json=model.document.get("metrics", {}),
    )


@dataclass(frozen=True)
class DecodeRate:
    """One in-process measurement: a batch size under one session configuration."""

    variant: str
    batch: int
    threads: int
    opt_level: str
    calls: int
    seconds: float
    images_per_s: float
    call_p50_ms: float
    gflops_per_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def session(
    onnx_path: Path | bytes, *, threads: int, opt_level: str = "all"
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = OPT_LEVELS[opt_level]
    source = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def time_calls(
    call: Callable[[], object], *, min_seconds: float, min_calls: int = 5, warmup_calls: int = 3
) -> tuple[int, float, list[float]]:
    """Repeat `call` for at least `min_seconds` and `min_calls`: (calls, seconds, per-call s)."""
    for _ in range(warmup_calls):
        call()
    durations = []
    started = time.perf_counter()
    while True:
        before = time.perf_counter()
        call()
        durations.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and len(durations) >= min_calls:
            return len(durations), elapsed, durations


def measure(
    model: ModelSpec,
    runtime: ort.InferenceSession,
    batch: int,
    *,
    variant: str,
    threads: int,
    opt_level: str,
    min_seconds: float,
    flops_per_image: int | None,
) -> DecodeRate:
    feeds = random_feeds(model, batch)
    outputs = [model.image_output]
    return timed_rate(
        lambda: runtime.run(outputs, feeds),
        batch,
        variant=variant,
        threads=threads,
        opt_level=opt_level,
        min_seconds=min_seconds,
        flops_per_image=flops_per_image,
    )


def timed_rate(
    call: Callable[[], object],
    batch: int,
    *,
    variant: str,
    threads: int,
    opt_level: str,
    min_seconds: float,
    flops_per_image: int | None,
) -> DecodeRate:
    """Time `call`, which decodes `batch` images, as `time_calls` does; the rate it reaches."""
    calls, seconds, durations = time_calls(call, min_seconds=min_seconds)
    images_per_s = calls * batch / seconds
    _LOGGER.info(
        "%s batch %d, %d threads, opt %s: %.0f images/s",
        variant,
        batch,
        threads,
        opt_level,
        images_per_s,
    )
    return DecodeRate(
        variant=variant,
        batch=batch,
        threads=threads,
        opt_level=opt_level,
        calls=calls,
        seconds=seconds,
        images_per_s=images_per_s,
        call_p50_ms=percentile(np.asarray(durations) * 1000, 50),
        gflops_per_s=images_per_s * flops_per_image / 1e9 if flops_per_image else None,
    )


def sweep(
    model: ModelSpec,
    configurations: Iterable[tuple[int, str, tuple[int, ...]]],
    *,
    min_seconds: float,
    flops_per_image: int | None,
    variant: str = "float32",
) -> list[DecodeRate]:
    """Measure each (threads, opt level, batch sizes); one session per configuration."""
    results = []
    for threads, opt_level, batches in configurations:
        runtime = session(model.onnx_path, threads=threads, opt_level=opt_level)
        for batch in batches:
            results.append(
                measure(
                    model,
                    runtime,
                    batch,
                    variant=variant,
                    threads=threads,
                    opt_level=opt_level,
                    min_seconds=min_seconds,
                    flops_per_image=flops_per_image,
                )
            )
    return results


def floor(
    model: ModelSpec,
    *,
    flops_per_image: int | None,
    min_seconds: float,
    thread_counts: tuple[int, ...],
) -> list[DecodeRate]:
    """Batch sweep per thread count at full optimization, then each optimization level."""
    configurations: list[tuple[int, str, tuple[int, ...]]] = [
        (threads, "all", FLOOR_BATCHES) for threads in thread_counts
    ]
    configurations += [
        (max(thread_counts), level, (1, 256)) for level in ("disabled", "basic", "extended")
    ]
    return sweep(model, configurations, min_seconds=min_seconds, flops_per_image=flops_per_image)
