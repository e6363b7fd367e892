"""Pictures of a run: the loss curve (matplotlib) and a grid of prior samples, one row per label."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from training.model import CVAE

_LOGGER = logging.getLogger(__name__)


@torch.no_grad()
def sample_grid(
    model: CVAE, columns: int = 10, temperature: float = 1.0, seed: int = 0, scale: int = 2
) -> Image.Image:
    """Prior samples z ~ N(0, temperature^2 I): row k shows `columns` images of label k."""
    config = model.config
    height, width = config.image_shape
    labels = torch.arange(config.num_classes).repeat_interleave(columns)
    was_training = model.training
    model.eval()
    images = model.sample(labels, temperature, generator=torch.Generator().manual_seed(seed))
    model.train(was_training)
    pixels = (images.numpy() * 255.0).round().astype(np.uint8)  # (K * columns, H, W)
    tiles = pixels.reshape(config.num_classes, columns, height, width)
    grid = tiles.transpose(0, 2, 1, 3).reshape(config.num_classes * height, columns * width)
    picture = Image.fromarray(grid, mode="L")
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def save_sample_grid(model: CVAE, path: str | Path, **kwargs: Any) -> None:
    sample_grid(model, **kwargs).save(path)


def save_loss_curve(history: Sequence[dict[str, float]], path: str | Path) -> None:
    """Training loss and validation negative ELBO per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.plot(epochs, [row["loss"] for row in history], label="train loss (weighted KL)")
    axis.plot(epochs, [row["valid_neg_elbo"] for row in history], label="valid −ELBO")
    axis.set_xlabel("epoch")
    axis.set_ylabel("nats per image")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
