"""The digits the image tests send: ten uint8 images, one per label."""

from __future__ import annotations

import numpy as np

_RNG = np.random.default_rng(3)
IMAGES = (_RNG.random((10, 28, 28)) ** 3 * 255).astype(np.uint8)
LABELS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=np.int64)
