"""Ratios computed within one run, and the speed bars checked against them."""

from __future__ import annotations

from typing import Any

# The speed bars the service is held to; every run checks them (docs/benchmarks.md, "Targets").
BIG_VS_ONNXRUNTIME = 0.95
C64_VS_TRITON = 3.0
C64_P99_MS = 25.0
C1_P50_MS = 1.0
SERVING_WITHIN_S = 1.0
RSS_MIB = 200.0
# The Open Inference Protocol's bars: against Triton on the same protocol, against in-process
# onnxruntime, and against cvae.v1 for the same work.
OIP_C64_VS_TRITON = 1.5
OIP_VS_CVAE_V1 = 0.9


def ok_rows(section: dict[str, Any], key: str = "rows") -> dict[str, dict[str, Any]]:
    """Scenario name -> row, for the rows (of `key`) that measured something."""
    return {row["scenario"]: row for row in section.get(key, []) if "images_per_s" in row}


def best_floor(results: dict[str, Any], batch: int) -> dict[str, Any] | None:
    """The fastest float32 in-process rate at `batch` over the measured thread counts and levels."""
    candidates = [r for r in results.get("floor", []) if r["batch"] == batch]
    return max(candidates, key=lambda r: r["images_per_s"], default=None)


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratios_and_targets(results: dict[str, Any]) -> dict[str, Any]:
    services = results.get("service", [])
    batching = ok_rows(services[0]) if services else {}
    triton = ok_rows(results.get("triton", {}))
    floor_256 = best_floor(results, 256)
    big = batching.get("big-2x256-uint8")
    ratios: dict[str, Any] = {
        "service_big_vs_onnxruntime_256": _ratio(
            big and big["images_per_s"], floor_256 and floor_256["images_per_s"]
        ),
        "onnxruntime_256_reference": floor_256,
        "service_vs_triton": {
            name: _ratio(row["images_per_s"], triton[name]["images_per_s"])
            for name, row in batching.items()
            if name in triton
        },
    }
    oip = ok_rows(services[0], "oip_grpc_rows") if services else {}

    def rate(rows: dict[str, dict[str, Any]], name: str) -> Any:
        return rows.get(name, {}).get("images_per_s")

    ratios["oip"] = {
        "c64_vs_triton": _ratio(rate(oip, "singles-c64-uint8"), rate(triton, "singles-c64-uint8")),
        "big_vs_onnxruntime_256": _ratio(
            rate(oip, "big-2x256-uint8"), floor_256 and floor_256["images_per_s"]
        ),
        "vs_cvae_v1": {
            name: _ratio(rate(oip, name), rate(batching, name)) for name in oip if name in batching
        },
    }
    c64, c1 = batching.get("singles-c64-uint8"), batching.get("singles-c1-uint8")
    first = services[0] if services else {}
    targets = [
        _target(
            "2 × 256 images (UINT8) ≥ 95% of in-process onnxruntime at batch 256",
            ratios["service_big_vs_onnxruntime_256"],
            lambda value: value >= BIG_VS_ONNXRUNTIME,
            "{:.2f}×",
        ),
        _target(
            "64 concurrent singles ≥ 3× Triton's images/s",
            ratios["service_vs_triton"].get("singles-c64-uint8"),
            lambda value: value >= C64_VS_TRITON,
            "{:.2f}×",
        ),
        _target(
            "64 concurrent singles p99 ≤ 25 ms",
            c64 and c64["p99_ms"],
            lambda value: value <= C64_P99_MS,
            "{:.1f} ms",
        ),
        _target(
            "one at a time p50 ≤ 1 ms", c1 and c1["p50_ms"], lambda v: v <= C1_P50_MS, "{:.2f} ms"
        ),
        _target(
            "SERVING within 1 s of start (as seen by the bench, health polled every 50 ms)",
            first.get("seconds_to_serving"),
            lambda value: value <= SERVING_WITHIN_S,
            "{:.2f} s",
        ),
        _target(
            "resident memory ≤ 200 MB after load",
            first.get("rss_mib_after_load"),
            lambda value: value * 1.048576 <= RSS_MIB,
            "{:.0f} MiB",
        ),
        _target(
            "OIP gRPC: 64 concurrent singles ≥ 1.5× Triton's images/s (same protocol)",
            ratios["oip"]["c64_vs_triton"],
            lambda value: value >= OIP_C64_VS_TRITON,
            "{:.2f}×",
        ),
        _target(
            "OIP gRPC: 2 × 256 images ≥ 95% of in-process onnxruntime at batch 256",
            ratios["oip"]["big_vs_onnxruntime_256"],
            lambda value: value >= BIG_VS_ONNXRUNTIME,
            "{:.2f}×",
        ),
        *(
            _target(
                f"OIP gRPC within 10% of cvae.v1 for the same work ({name})",
                value,
                lambda value: value >= OIP_VS_CVAE_V1,
                "{:.2f}×",
            )
            for name, value in ratios["oip"]["vs_cvae_v1"].items()
        ),
    ]
    return {"ratios": ratios, "targets": targets}


def _target(name: str, value: Any, passes: Any, fmt: str) -> dict[str, Any]:
    if value is None:
        return {"target": name, "measured": None, "shown": "not measured", "pass": None}
    return {
        "target": name,
        "measured": value,
        "shown": fmt.format(value),
        "pass": bool(passes(value)),
    }
