"""The service's data plane in process, without gRPC: codec, sampler, batcher, onnxruntime, encode.

Callers parse a serialized GenerateRequest, run it through the service's own ImageGenerator
(DynamicBatcher + ModelRuntime) and serialize the response, `concurrency` at a time on one event
loop. Between the decoder floor and the end-to-end rows, this splits the service's cost into
the model, the service's Python, and gRPC.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from bench.frames import generate_request
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(model: ModelSpec, threads: int, concurrency: int, seconds: float) -> dict[str, Any]:
    # Imported here: the rest of the bench must not depend on the service's internals.
    from cvae.v1 import generator_pb2
    from service import codec
    from service.batcher import DynamicBatcher
    from service.generator import ImageGenerator
    from service.options import batching_policy, runtime_options
    from service.runtime import load_runtime
    from service.settings import ServiceSettings

    runtime = load_runtime(
        model.onnx_path.parent, runtime_options(ServiceSettings(intra_op_threads=threads))
    )
    batcher = DynamicBatcher(batching_policy(ServiceSettings()))
    generator = ImageGenerator(batcher)
    raw = generate_request(1, "UINT8", num_classes=model.num_classes).SerializeToString()
    calls = 0
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal calls
        while time.perf_counter() < stop:
            job = codec.decode_generate(
                generator_pb2.GenerateRequest.FromString(raw), runtime.spec, 1024
            )
            result = await generator.generate(runtime, job, None)
            codec.encode_generated(result, job).SerializeToString()
            calls += 1

    cpu_before, started = _cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    batcher.close()
    return {
        "intra_op_threads": threads,
        "concurrency": concurrency,
        "calls_per_s": calls / wall,
        "cpu_cores": cpu / wall,
        "cpu_ms_per_call": cpu / calls * 1000 if calls else None,
    }


def measure(model: ModelSpec, *, thread_counts: tuple[int, ...], seconds: float) -> dict[str, Any]:
    """Single-image calls at 1 and 64 concurrent callers, per onnxruntime thread count."""
    rows = []
    try:
        for threads in thread_counts:
            for concurrency in (1, 64):
                row = asyncio.run(_run(model, threads, concurrency, seconds))
                _LOGGER.info("data plane %s", row)
                rows.append(row)
    except Exception as error:  # the service's internals changed: say so, keep the bench going
        _LOGGER.exception("in-process data plane failed")
        return {"error": f"{type(error).__name__}: {error}", "rows": rows}
    return {"rows": rows}
