"""bench/real_images.py: the page is its results file rendered, and calls really overlap."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from bench.real_images import _rate, render

_DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_page_is_its_results_file_rendered() -> None:
    results = json.loads((_DOCS / "real-images-numbers.json").read_text())
    assert render(results) == (_DOCS / "real-images-numbers.md").read_text()


def test_a_results_file_without_two_in_flight_figures_still_renders() -> None:
    results = json.loads((_DOCS / "real-images-numbers.json").read_text())
    results["throughput_256"] = {"Encode": {"served": 9, "in_process": 10, "ratio": 0.9}}
    assert "| Encode | 9 | — | 10 | — | 0.90 | — | — | — |" in render(results)


def test_two_in_flight_means_two_calls_at_once() -> None:
    lock = threading.Lock()
    running, most = 0, 0

    def call() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    assert _rate(call, 256, 0.3, in_flight=2) > 0
    assert most == 2
    most = 0
    _rate(call, 256, 0.1, in_flight=1)
    assert most == 1
