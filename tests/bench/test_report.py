"""bench/report.py and bench/plots.py: a results file becomes a page and PNGs, gaps included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.analysis import ratios_and_targets
from bench.plots import draw
from bench.report import markdown


def _row(server: str, scenario: str, concurrency: int, images: int, rate: float) -> dict[str, Any]:
    return {
        "server": server, "config": "c", "scenario": scenario, "concurrency": concurrency,
        "images_per_request": images, "encoding": "UINT8", "tool": "h2load",
        "images_per_s": rate, "requests_per_s": rate / images, "p50_ms": 1.0, "p90_ms": 2.0,
        "p99_ms": 3.0, "requests_ok": 100, "grpc_status_verified": True,
    }  # fmt: skip


def _results() -> dict[str, Any]:
    floor = [
        {"variant": "float32", "batch": b, "threads": t, "opt_level": "all", "calls": 5,
         "seconds": 1.0, "images_per_s": 1000.0 * t, "call_p50_ms": 1.0, "gflops_per_s": 14.0}
        for b in (1, 256) for t in (1, 2)
    ]  # fmt: skip
    results: dict[str, Any] = {
        "quick": True,
        "machine": {
            "measured_at": "2026-11-26T09:00:00Z", "cpu_model": "AMD EPYC", "cores": 2,
            "usable_cores": 2, "cpu_flags": ["avx512_vnni"], "memory_gib": 23.5,
            "load_average_at_start": (1.0, 1.0, 1.0), "load_average_at_end": (2.0, 1.0, 1.0),
            "python": "3.11.7", "packages": {"onnxruntime": "1.32.0"}, "h2load": "h2load 1.52",
        },
        "model": {"name": "cvae-mnist", "version": "1", "flops_per_image": 14_000_000},
        "floor": floor,
        "torch_eager": {"skipped": "no checkpoint"},
        "service": [
            {"config": "batching on", "seconds_to_serving": 0.4, "rss_mib_after_load": 150.0,
             "rows": [_row("cvae", f"singles-c{c}-uint8", c, 1, 900.0 * c ** 0.5)
                      for c in (1, 4, 16, 64, 256)]
             + [_row("cvae", "big-2x256-uint8", 2, 256, 1900.0),
                {"server": "cvae", "config": "c", "scenario": "singles-c1-png", "error": "boom"}],
             "stream": {"tool": "python grpcio client", "images": 10, "chunks": 1, "seconds": 1.0,
                        "images_per_s": 10.0, "first_chunk_ms": 1.0, "chunk_gap_p50_ms": 1.0,
                        "chunk_gap_p99_ms": 1.0},
             "profiles": {"singles-c64-threads": {"error": "py-spy failed: permission"}}},
            {"config": "slots", "error": "ServerError: exited with 2", "rows": []},
        ],
        "triton": {"config": "triton", "error": "Triton environment: no Python 3.12", "rows": []},
    }  # fmt: skip
    results.update(ratios_and_targets(results))
    return results


def test_a_partial_run_still_gives_a_page_that_says_what_is_missing(tmp_path: Path) -> None:
    results = _results()
    page = markdown(results, {"floor": "images/bench-floor.png"})
    assert page.startswith("# Benchmarks")
    assert "Quick smoke run" in page
    assert "no Python 3.12" in page  # why Triton is missing
    assert "exited with 2" in page  # why a service configuration is missing
    assert "error: boom" in page
    assert "| 64 concurrent singles ≥ 3× Triton's images/s | not measured | – |" in page
    assert "py-spy failed: permission" in page
    assert "2,000" in page  # the floor table
    assert "14.0 MFLOP per image" in page


def test_plots_are_written_as_png_files(tmp_path: Path) -> None:
    files = draw(_results(), tmp_path)
    assert set(files) == {"throughput", "p99", "floor"}
    for path in files.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
