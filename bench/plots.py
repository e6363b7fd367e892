"""PNG plots of one run: throughput and p99 against concurrency for both servers, and the floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenarios import SINGLE_CONCURRENCY


def _single_series(section: dict[str, Any], key: str) -> tuple[list[int], list[float]]:
    rows = {
        row["concurrency"]: row[key]
        for row in section.get("rows", [])
        if row.get("scenario", "").startswith("singles-")
        and row.get("encoding") == "UINT8"
        and key in row
    }
    xs = [c for c in SINGLE_CONCURRENCY if c in rows]
    return xs, [rows[c] for c in xs]


def _servers(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    series = [(f"cvae ({section['config']})", section) for section in results.get("service", [])]
    grpc_floor = results.get("grpc_floor", {})
    if grpc_floor.get("rows"):
        series.append((f"floor: {grpc_floor['config']}", grpc_floor))
    triton = results.get("triton", {})
    if triton.get("rows"):
        series.append((f"Triton ({triton.get('config', '')})", triton))
    return series


def draw(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write the plots into `folder`; returns name -> file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    cores = results.get("machine", {}).get("cores")
    for key, name, ylabel, log_y in (
        ("images_per_s", "throughput", "images/s (1 image per request)", False),
        ("p99_ms", "p99", "p99 latency (ms)", True),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
        for label, section in _servers(results):
            xs, ys = _single_series(section, key)
            if xs:
                axes.plot(xs, ys, marker="o", label=label)
        axes.set_xscale("log", base=2)
        axes.set_xticks(list(SINGLE_CONCURRENCY), [str(c) for c in SINGLE_CONCURRENCY])
        if log_y:
            axes.set_yscale("log")
        axes.set_xlabel("concurrent callers (h2load streams)")
        axes.set_ylabel(ylabel)
        axes.set_title(f"Single-image Generate vs Triton ModelInfer, {cores} cores")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        files[name] = folder / f"bench-{name}.png"
        figure.savefig(files[name])
        plt.close(figure)
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    floor = [r for r in results.get("floor", []) if r["opt_level"] == "all"]
    for threads in sorted({r["threads"] for r in floor}):
        points = sorted((r["batch"], r["images_per_s"]) for r in floor if r["threads"] == threads)
        axes.plot(*zip(*points, strict=True), marker="o", label=f"float32, {threads} thread(s)")
    eager = results.get("torch_eager", {}).get("rates", [])
    for threads in sorted({r["threads"] for r in eager}):
        points = sorted((r["batch"], r["images_per_s"]) for r in eager if r["threads"] == threads)
        axes.plot(
            *zip(*points, strict=True),
            marker="^",
            linestyle=":",
            label=f"torch eager, {threads} thread(s)",
        )
    axes.set_xscale("log", base=2)
    batches = sorted({r["batch"] for r in floor})
    axes.set_xticks(batches, [str(batch) for batch in batches])
    axes.set_xlabel("batch size")
    axes.set_ylabel("images/s")
    axes.set_title("In-process onnxruntime decode rate (the floor)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    files["floor"] = folder / "bench-floor.png"
    figure.savefig(files["floor"])
    plt.close(figure)
    return files
