"""LatentSampler: the same seed gives the same bytes, however the rows are taken."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.sampler import LatentSampler, draw_seed, sample_latents


def test_same_seed_same_bytes_and_different_seed_different_rows() -> None:
    first = sample_latents(16, seed=42, count=5, temperature=1.0)
    again = sample_latents(16, seed=42, count=5, temperature=1.0)
    other = sample_latents(16, seed=43, count=5, temperature=1.0)
    assert first.dtype == np.float32 and first.shape == (5, 16)
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


def test_is_numpy_pcg64_standard_normal_in_request_order() -> None:
    expected = np.random.Generator(np.random.PCG64(7)).standard_normal((3, 4), dtype=np.float32)
    assert sample_latents(4, seed=7, count=3, temperature=1.0).tobytes() == expected.tobytes()


def test_temperature_scales_the_same_draws() -> None:
    base = sample_latents(16, seed=3, count=4, temperature=1.0)
    hot = sample_latents(16, seed=3, count=4, temperature=2.5)
    np.testing.assert_array_equal(hot, base * np.float32(2.5))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    latent_dim=st.integers(1, 33),
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=6),
)
def test_rows_taken_in_chunks_equal_rows_taken_at_once(
    seed: int, latent_dim: int, chunks: list[int]
) -> None:
    sampler = LatentSampler(latent_dim, seed, 0.7)
    pieces = np.concatenate([sampler.take(count) for count in chunks])
    whole = sample_latents(latent_dim, seed, sum(chunks), 0.7)
    assert pieces.tobytes() == whole.tobytes()


def test_drawn_seeds_fit_in_63_bits_and_differ() -> None:
    seeds = {draw_seed() for _ in range(20)}
    assert len(seeds) == 20
    assert all(0 <= seed < 2**63 for seed in seeds)
