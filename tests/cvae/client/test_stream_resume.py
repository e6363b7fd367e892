"""An interrupted stream resumes where it stopped: nothing lost, nothing repeated."""

from __future__ import annotations

import numpy as np

from cvae.client.stream_resume import StreamProgress
from cvae.client.types import GenerateResult


def _part(offset: int, count: int, seed: int | None = 5) -> GenerateResult:
    return GenerateResult(
        images=np.arange(offset, offset + count, dtype=np.uint8)[:, None, None],
        labels=np.zeros(count, dtype=np.int64),
        latents=None,
        model_name="m",
        model_version="1",
        seed=seed,
        offset=offset,
    )


def test_seeded_resume_skips_what_was_delivered_even_across_other_chunk_sizes() -> None:
    progress = StreamProgress([0] * 10, seed=None, latents=None)
    progress.begin_attempt()
    delivered = [progress.accept(_part(0, 4))]
    assert progress.seed == 5  # learned from the server's first message
    # the retry re-sends the whole request; the server now chunks by 3
    progress.begin_attempt()
    assert progress.remaining_labels() == [0] * 10
    delivered += [progress.accept(_part(o, min(3, 10 - o))) for o in (0, 3, 6, 9)]
    parts = [p for p in delivered if p is not None]
    images = np.concatenate([p.images[:, 0, 0] for p in parts])
    assert images.tolist() == list(range(10))
    assert [p.offset for p in parts] == [0, 4, 6, 9]
    assert progress.complete


def test_latent_resume_asks_only_for_the_rest() -> None:
    latents = np.arange(20, dtype=np.float32).reshape(10, 2)
    progress = StreamProgress(list(range(10)), seed=None, latents=latents)
    progress.begin_attempt()
    progress.accept(_part(0, 4, seed=None))
    progress.begin_attempt()
    assert progress.remaining_labels() == [4, 5, 6, 7, 8, 9]
    assert np.array_equal(progress.remaining_latents(), latents[4:])  # type: ignore[arg-type]
    resumed = progress.accept(_part(0, 6, seed=None))
    assert resumed is not None and resumed.offset == 4
    assert progress.complete
