"""One `make bench` run: decoder floor, service, Triton, profile; then results, doc and plots."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bench import (
    dataplane,
    floor,
    machine,
    plots,
    report,
    service_bench,
    torch_eager,
    triton_bench,
)
from bench.analysis import ratios_and_targets
from bench.h2load import h2load_path
from bench.scenarios import Scenario, Timing, big, job_as_unary_calls, singles
from bench.servers import ServiceConfig
from modelrepo import newest_spec

_LOGGER = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchOptions:
    quick: bool
    model_repository: Path
    model_name: str
    results: Path
    docs: Path | None
    """Where docs/benchmarks.md, .json and the plots go; None writes them under `results`."""
    triton: bool = True
    profile: bool = True
    triton_venv: Path = _ROOT / ".venv-triton"
    checkpoint: Path = _ROOT / "runs" / "default" / "best.pt"
    """The training checkpoint for the PyTorch eager reference (skipped when absent)."""

    @property
    def timing(self) -> Timing:
        return Timing(duration_s=1.5, warmup_s=0.3) if self.quick else Timing(6.0, 1.0)

    @property
    def stream_images(self) -> int:
        return 10_000 if self.quick else 100_000


def _thread_counts() -> tuple[int, ...]:
    usable = len(os.sched_getaffinity(0))
    return tuple(sorted({1, 2, usable}))


def _service_plans(options: BenchOptions) -> list[tuple[ServiceConfig, list[Scenario], bool]]:
    """(configuration, scenarios, with stream and profile) for each service configuration."""
    batching_on: list[Scenario] = [
        *singles("UINT8"),
        big("UINT8"),
        *singles("PNG", (1, 64)),
        big("PNG"),
        job_as_unary_calls(options.stream_images),
    ]
    batching_off: list[Scenario] = [*singles("UINT8"), big("UINT8")]
    # Thread oversubscription: onnxruntime's threads and the event loop share the cores.
    variants: list[Scenario] = [*singles("UINT8", (1, 64, 256)), big("UINT8")]
    return [
        (ServiceConfig(batching=True), batching_on, True),
        (ServiceConfig(batching=False), batching_off, False),
        # The service's default on 2 CPUs is 2 slots of 1 thread; before, 1 slot of 2 threads.
        (ServiceConfig(batching=True, intra_op_threads=2, decoder_slots=1), variants, False),
        (ServiceConfig(batching=True, intra_op_threads=1, decoder_slots=1), variants, False),
        # Processes on one port (SO_REUSEPORT): each its own GIL and event loop.
        (ServiceConfig(batching=True, workers=2), variants, False),
    ]


def run(options: BenchOptions) -> dict[str, Any]:
    work = options.results / ("quick" if options.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    h2load_path()  # fail at once, with the install hint, rather than after the floor
    model = newest_spec(options.model_repository, options.model_name)
    results: dict[str, Any] = {"quick": options.quick, "machine": machine.describe()}
    threads = _thread_counts()
    min_seconds = 0.3 if options.quick else 2.0
    with logging_redirect_tqdm(), tqdm(desc="bench", unit="step") as bar:

        def progress(message: str) -> None:
            bar.set_postfix_str(message[:70])
            bar.update()

        progress("counting FLOPs")
        cost = floor.describe_model(model)
        results["model"] = cost.as_dict()
        flops = cost.flops_per_image
        progress("in-process onnxruntime floor")
        rates = floor.floor(
            model, flops_per_image=flops, min_seconds=min_seconds, thread_counts=threads
        )
        results["floor"] = [rate.as_dict() for rate in rates]
        progress("PyTorch eager reference")
        results["torch_eager"] = torch_eager.measure(
            model,
            options.checkpoint,
            batches=(1, 256),
            thread_counts=threads,
            min_seconds=min_seconds,
            flops_per_image=flops,
        )
        progress("the service's data plane in process")
        results["dataplane"] = dataplane.measure(
            model, thread_counts=threads, seconds=1.0 if options.quick else 3.0
        )
        results["service"] = [
            service_bench.run_config(
                model,
                config,
                plan,
                timing=options.timing,
                work=work,
                stream_images=options.stream_images if extras else 0,
                profile_seconds=(3.0 if options.quick else 8.0)
                if extras and options.profile
                else 0,
                oip_plan=[*singles("UINT8", (1, 64)), big("UINT8")] if extras else None,
                progress=progress,
            )
            for config, plan, extras in _service_plans(options)
        ]
        results["grpc_floor"] = service_bench.run_grpc_floor(
            model,
            singles("UINT8", (1, 64, 256)),
            timing=options.timing,
            work=work,
            progress=progress,
        )
        if options.triton:
            results["triton"] = triton_bench.run(
                model,
                [*singles("UINT8"), big("UINT8"), job_as_unary_calls(options.stream_images)],
                timing=options.timing,
                work=work,
                venv=options.triton_venv,
                max_batch=256,  # Triton refuses a request above its max batch (no splitting)
                intra_op_threads=max(threads),
                progress=progress,
            )
        else:
            results["triton"] = {"error": "skipped (--no-triton)", "rows": []}
        results["machine"]["load_average_at_end"] = machine.load_average()
    results.update(ratios_and_targets(results))
    _write(results, options, work)
    return results


def _write(results: dict[str, Any], options: BenchOptions, work: Path) -> None:
    text = json.dumps(results, indent=2, default=str)
    (work / "benchmarks.json").write_text(text)
    render(results, options.docs or work / "docs")
    if options.docs is not None and not options.quick:
        shutil.copyfile(work / "benchmarks.json", options.results / "latest.json")


def render(results: dict[str, Any], docs: Path) -> None:
    """benchmarks.md, benchmarks.json and the plots in `docs`, from one run's results."""
    images = docs / "images"
    images.mkdir(parents=True, exist_ok=True)
    plot_files = plots.draw(results, images)
    (docs / "benchmarks.json").write_text(json.dumps(results, indent=2, default=str))
    (docs / "benchmarks.md").write_text(
        report.markdown(
            results, {name: os.path.relpath(path, docs) for name, path in plot_files.items()}
        )
    )
    _LOGGER.info("wrote %s and %s", docs / "benchmarks.md", docs / "benchmarks.json")
