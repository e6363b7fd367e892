"""bench/analysis.py: ratios within one run and the speed bars."""

from __future__ import annotations

from typing import Any

import pytest

from bench.analysis import ratios_and_targets


def _row(scenario: str, images_per_s: float, p50: float = 1.0, p99: float = 2.0) -> dict[str, Any]:
    return {"scenario": scenario, "images_per_s": images_per_s, "p50_ms": p50, "p99_ms": p99}


def _results(service_big: float, c64: float, triton_c64: float) -> dict[str, Any]:
    return {
        "floor": [
            {"batch": 256, "threads": 1, "opt_level": "all", "images_per_s": 8000.0},
            {"batch": 256, "threads": 2, "opt_level": "all", "images_per_s": 9000.0},
            {"batch": 1, "threads": 2, "opt_level": "all", "images_per_s": 20000.0},
        ],
        "service": [
            {
                "rows": [
                    _row("big-2x256-uint8", service_big),
                    _row("singles-c64-uint8", c64, p99=20.0),
                    _row("singles-c1-uint8", 900.0, p50=0.8),
                    {"scenario": "singles-c4-uint8", "error": "grpc-status 14"},
                ],
                "seconds_to_serving": 0.5,
                "rss_mib_after_load": 150.0,
            }
        ],
        "triton": {
            "rows": [_row("singles-c64-uint8", triton_c64), _row("big-2x256-uint8", 6000.0)]
        },
    }


def test_ratios_use_the_fastest_in_process_rate_at_that_batch() -> None:
    found = ratios_and_targets(_results(service_big=8700.0, c64=4500.0, triton_c64=1400.0))
    ratios = found["ratios"]
    assert ratios["service_big_vs_onnxruntime_256"] == pytest.approx(8700 / 9000)
    assert ratios["onnxruntime_256_reference"]["threads"] == 2
    assert ratios["service_vs_triton"] == {
        "singles-c64-uint8": pytest.approx(4500 / 1400),
        "big-2x256-uint8": pytest.approx(8700 / 6000),
    }
    assert [target["pass"] for target in found["targets"]][:6] == [True] * 6
    # No OIP rows in this run: its bars say "not measured", never "met".
    oip = [t for t in found["targets"] if t["target"].startswith("OIP")]
    assert [t["shown"] for t in oip] == ["not measured", "not measured"]


def test_oip_bars_compare_the_same_work_on_one_protocol_and_against_cvae_v1() -> None:
    results = _results(service_big=8700.0, c64=4500.0, triton_c64=1400.0)
    results["service"][0]["oip_grpc_rows"] = [
        _row("singles-c64-uint8", 4200.0),
        _row("big-2x256-uint8", 7000.0),
    ]
    found = ratios_and_targets(results)
    oip = found["ratios"]["oip"]
    assert oip["c64_vs_triton"] == pytest.approx(4200 / 1400)
    assert oip["big_vs_onnxruntime_256"] == pytest.approx(7000 / 9000)
    assert oip["vs_cvae_v1"] == {
        "singles-c64-uint8": pytest.approx(4200 / 4500),
        "big-2x256-uint8": pytest.approx(7000 / 8700),
    }
    met = {t["target"]: t["pass"] for t in found["targets"] if t["target"].startswith("OIP")}
    assert met == {
        "OIP gRPC: 64 concurrent singles ≥ 1.5× Triton's images/s (same protocol)": True,
        "OIP gRPC: 2 × 256 images ≥ 95% of in-process onnxruntime at batch 256": False,
        "OIP gRPC within 10% of cvae.v1 for the same work (singles-c64-uint8)": True,
        "OIP gRPC within 10% of cvae.v1 for the same work (big-2x256-uint8)": False,
    }


def test_missed_bars_and_missing_measurements_are_told_apart() -> None:
    results = _results(service_big=8000.0, c64=4000.0, triton_c64=1400.0)
    results["triton"] = {"rows": [], "error": "no Python 3.12"}
    targets = {t["target"]: t for t in ratios_and_targets(results)["targets"]}
    big = next(t for name, t in targets.items() if name.startswith("2 × 256"))
    assert big["pass"] is False and big["shown"] == "0.89×"
    versus_triton = next(t for name, t in targets.items() if "Triton" in name)
    assert versus_triton["pass"] is None and versus_triton["shown"] == "not measured"
