"""LatentSampler: the same seed gives the same bytes, however the rows are taken."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.sampler import LatentSampler, draw_seed


def test_same_seed_same_bytes_and_different_seed_different_rows() -> None:
    first = LatentSampler(16, 42, 1.0).take(5)
    again = LatentSampler(16, 42, 1.0).take(5)
    other = LatentSampler(16, 43, 1.0).take(5)
    assert first.dtype == np.float32 and first.shape == (5, 16)
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


def test_is_numpy_pcg64_standard_normal_in_request_order() -> None:
    expected = np.random.Generator(np.random.PCG64(7)).standard_normal((3, 4), dtype=np.float32)
    assert LatentSampler(4, 7, 1.0).take(3).tobytes() == expected.tobytes()


def test_temperature_scales_the_same_draws() -> None:
    base = LatentSampler(16, 3, 1.0).take(4)
    hot = LatentSampler(16, 3, 2.5).take(4)
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
    whole = LatentSampler(latent_dim, seed, 0.7).take(sum(chunks))
    assert pieces.tobytes() == whole.tobytes()


def test_drawn_seeds_fit_in_63_bits_and_differ() -> None:
    seeds = {draw_seed() for _ in range(20)}
    assert len(seeds) == 20
    assert all(0 <= seed < 2**63 for seed in seeds)
