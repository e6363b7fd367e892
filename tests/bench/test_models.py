"""bench/models.py: docs/models.md is what its own results file renders to, and it names both
shipped models, the default one first."""

from __future__ import annotations

import json
from pathlib import Path

from bench.models import DEFAULT_MODEL, render

_DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_page_is_its_results_rendered() -> None:
    results = json.loads((_DOCS / "models.json").read_text())
    assert (_DOCS / "models.md").read_text() == render(results)


def test_the_page_compares_every_shipped_model_with_the_default() -> None:
    results = json.loads((_DOCS / "models.json").read_text())
    shipped = sorted(p.name for p in (_DOCS.parent / "models").iterdir() if p.is_dir())
    assert list(results["models"]) == shipped
    assert results["server"]["default_model"] == DEFAULT_MODEL
    for model in results["models"].values():
        assert model["served_images_per_s_batch_256"] > 0
        assert model["single_image_latency_ms"]["p50"] > 0
        assert not model["onnx"].startswith("/")  # named relative to the repository
