"""The sample grid: row r holds the images requested for label r."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.evaluate.sample_grid import grid_image, save_grid


def test_each_row_shows_its_own_label(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(3), 4)
    images = np.repeat((labels / 3.0 + 0.1)[:, None, None], 28, axis=1).repeat(28, axis=2)
    path = save_grid(
        tmp_path / "grid.png", images.astype(np.float32), labels, ["a", "b", "c"], columns=4
    )
    with Image.open(path) as picture:
        pixels = np.asarray(picture)
    assert pixels.shape == ((3 * 30 + 2) * 2, (14 + 4 * 30 + 2) * 2)
    for row in range(3):
        top = (2 + row * 30 + 14) * 2  # middle of the row's tiles
        left = (14 + 2 + 14) * 2  # middle of the first tile
        assert abs(int(pixels[top, left]) - (row / 3.0 + 0.1) * 255) <= 1


def test_grid_clips_out_of_range_pixels() -> None:
    images = np.full((2, 28, 28), 3.0, np.float32)
    picture = np.asarray(grid_image(images, np.array([0, 1]), ["0", "1"], columns=1, scale=1))
    assert picture[2 + 14, 14 + 2 + 14] == 255


def test_grid_refuses_flat_images() -> None:
    with pytest.raises(ValueError, match="images"):
        grid_image(np.zeros((2, 784), np.float32), np.array([0, 1]), ["0", "1"])
