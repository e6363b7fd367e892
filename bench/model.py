"""The model under test is a `modelrepo.ModelSpec` (newest version: `modelrepo.newest_spec`)."""

from __future__ import annotations

import numpy as np

from modelrepo import ModelSpec


def random_feeds(model: ModelSpec, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Decoder feeds for `batch` images: z ~ N(0, I) and labels cycling through the classes."""
    rng = np.random.default_rng(seed)
    return {
        model.latent_input: rng.standard_normal((batch, model.latent_dim), dtype=np.float32),
        model.label_input: np.arange(batch, dtype=np.int64) % model.num_classes,
    }
