"""Latents from a seed: the same (seed, count, temperature) gives the same bytes everywhere."""

from __future__ import annotations

import secrets

import numpy as np

# Seeds the server draws itself stay below 2**63 so that every client language can hold them.
_DRAWN_SEED_BITS = 63


def draw_seed() -> int:
    """A fresh seed for a request that gave none; it is returned so the request can be replayed."""
    return secrets.randbits(_DRAWN_SEED_BITS)


class LatentSampler:
    """Standard-normal latents, in request order, from numpy's PCG64 generator.

    Row i of a request is always the i-th group of `latent_dim` draws of PCG64(seed), scaled by
    the temperature, so a request split into chunks or pieces gets exactly the rows it would
    get whole (`take` continues where the previous call stopped).
    """

    def __init__(self, latent_dim: int, seed: int, temperature: float) -> None:
        self._latent_dim = latent_dim
        self._temperature = np.float32(temperature)
        self._generator = np.random.Generator(np.random.PCG64(seed))

    def take(self, count: int) -> np.ndarray:
        """The next `count` rows: float32 (count, latent_dim)."""
        latents = self._generator.standard_normal((count, self._latent_dim), dtype=np.float32)
        if self._temperature != 1.0:
            latents *= self._temperature
        return latents
