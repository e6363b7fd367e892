"""bench/torch_eager.py: the checkpoint's decoder timed like the floor and compared with its ONNX
export; without a checkpoint the reference is skipped and says where it looked (no machine path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.torch_eager import measure
from modelrepo import newest_spec

_ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_checkpoint_is_named_relative_to_the_repository() -> None:
    model = newest_spec(_ROOT / "models", "cvae-mnist")
    result = measure(
        model,
        _ROOT / "runs" / "no-such-run" / "best.pt",
        batches=(1,),
        thread_counts=(1,),
        min_seconds=0.01,
        flops_per_image=None,
    )
    assert result == {
        "skipped": "no checkpoint at runs/no-such-run/best.pt (`make model` writes one)"
    }


def test_the_checkpoint_decoder_is_timed_and_matches_its_onnx_export(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from export.exporter import export_checkpoint
    from tests.export.conftest import SMALL_MODEL, small_model
    from training.checkpoint import save_checkpoint
    from training.config import TrainConfig

    checkpoint = tmp_path / "small.pt"
    save_checkpoint(checkpoint, small_model(), TrainConfig(model=SMALL_MODEL, epochs=1))
    export_checkpoint(checkpoint, tmp_path / "models")
    result = measure(
        newest_spec(tmp_path / "models"),
        checkpoint,
        batches=(1, 4),
        thread_counts=(1,),
        min_seconds=0.01,
        flops_per_image=1000,
    )
    assert result["max_abs_difference_vs_onnx"] < 1e-4
    assert [(r["batch"], r["threads"], r["opt_level"]) for r in result["rates"]] == [
        (1, 1, "eager"),
        (4, 1, "eager"),
    ]
    assert all(r["images_per_s"] > 0 and r["gflops_per_s"] > 0 for r in result["rates"])
