"""bench/torch_eager.py: without a checkpoint the reference is skipped, and says where it looked
in words that name no machine."""

from __future__ import annotations

from pathlib import Path

from bench.torch_eager import measure
from modelrepo import newest_spec

_ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_checkpoint_is_named_relative_to_the_repository() -> None:
    model = newest_spec(_ROOT / "models")
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
