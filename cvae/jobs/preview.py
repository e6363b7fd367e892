"""Quick looks: a grid PNG (one row per label) and a latent interpolation strip PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvae.client import Client
from cvae.jobs.atomic import OutputError, atomic_file, describe_os_error


def tile(images: np.ndarray, rows: int, columns: int, padding: int = 2) -> np.ndarray:
    """uint8 [rows·columns, H, W] images → one uint8 picture, row-major, with dark padding."""
    count, height, width = images.shape
    if count != rows * columns:
        raise ValueError(f"{count} images do not fill {rows}×{columns}")
    canvas = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding), np.uint8
    )
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top = padding + row * (height + padding)
        left = padding + column * (width + padding)
        canvas[top : top + height, left : left + width] = image
    return canvas


def save_png(picture: np.ndarray, out: Path, scale: int = 2) -> None:
    """Write a grayscale picture as a PNG (enlarged `scale` times), atomically."""
    from PIL import Image

    image = Image.fromarray(picture, mode="L")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as stream:
            image.save(stream, format="PNG")
    except OSError as error:
        raise OutputError(describe_os_error(error, out)) from error


def grid(
    client: Client,
    labels: Sequence[int],
    per_label: int,
    seed: int,
    temperature: float = 1.0,
    model_version: str | None = None,
) -> np.ndarray:
    """uint8 picture: row r holds `per_label` samples of labels[r]."""
    requested = np.repeat(np.asarray(labels, dtype=np.int64), per_label)
    result = client.generate(
        requested,
        seed=seed,
        temperature=temperature,
        model_version=model_version,
        omit_latents=True,
    )
    return tile(result.images, len(labels), per_label)


def latent_for_seed(
    client: Client, label: int, seed: int, temperature: float, model_version: str | None
) -> np.ndarray:
    """The latent the server draws for one image of `label` with `seed`, float32 [latent_dim]."""
    result = client.generate(
        [label], seed=seed, temperature=temperature, model_version=model_version
    )
    if result.latents is None:
        raise RuntimeError("the server returned no latents")
    return np.asarray(result.latents[0], dtype=np.float32)


def interpolate(
    client: Client,
    label: int,
    start: np.ndarray,
    end: np.ndarray,
    steps: int,
    model_version: str | None = None,
) -> np.ndarray:
    """uint8 strip: `steps` images of `label` along the straight line from `start` to `end`."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    latents = (1.0 - weights) * start[None, :] + weights * end[None, :]
    result = client.generate(
        [label] * steps, latents=latents.astype(np.float32), model_version=model_version
    )
    return tile(result.images, 1, steps)
