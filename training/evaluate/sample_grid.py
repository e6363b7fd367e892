"""The sample grid PNG: one row per label, `columns` generated digits in each (Pillow)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_LOGGER = logging.getLogger(__name__)
_GUTTER = 2  # pixels between tiles (before scaling)
_LABEL_WIDTH = 14  # room for the row's class name on the left (before scaling)
_GUTTER_SHADE = 64


def grid_image(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    columns: int = 16,
    scale: int = 2,
) -> Image.Image:
    """The first `columns` images of each label, a row per label, labelled on the left."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"need images [N, H, W] and N labels, got {images.shape}, {len(labels)}")
    height, width = images.shape[1:]
    rows = len(class_names)
    canvas = np.full(
        (rows * (height + _GUTTER) + _GUTTER, _LABEL_WIDTH + columns * (width + _GUTTER) + _GUTTER),
        _GUTTER_SHADE,
        dtype=np.uint8,
    )
    for row in range(rows):
        picked = images[np.asarray(labels) == row][:columns]
        for column, image in enumerate(picked):
            top = _GUTTER + row * (height + _GUTTER)
            left = _LABEL_WIDTH + _GUTTER + column * (width + _GUTTER)
            tile = np.clip(image, 0.0, 1.0) * 255.0
            canvas[top : top + height, left : left + width] = np.round(tile).astype(np.uint8)
    picture = Image.fromarray(canvas, mode="L").resize(
        (canvas.shape[1] * scale, canvas.shape[0] * scale), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(picture)
    for row, name in enumerate(class_names):
        middle = (_GUTTER + row * (height + _GUTTER) + height // 2) * scale
        draw.text((4, middle - 5), str(name), fill=255)
    return picture


def save_grid(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    columns: int = 16,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(images, labels, class_names, columns=columns).save(path, format="PNG")
    _LOGGER.info("sample grid: %s", path)
    return path
