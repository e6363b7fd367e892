"""PyTorch eager reference: the training checkpoint's decoder, timed like the ONNX floor.

Only when a checkpoint is at hand (`make model` writes runs/default/best.pt); the served model
is the ONNX file, so this is a reference point, not the floor.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bench.floor import session, timed_rate
from bench.machine import repository_path
from bench.model import random_feeds
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)


def measure(
    model: ModelSpec,
    checkpoint: Path,
    *,
    batches: tuple[int, ...],
    thread_counts: tuple[int, ...],
    min_seconds: float,
    flops_per_image: int | None,
) -> dict[str, Any]:
    """Eager decode rates, and how far the checkpoint's images are from the ONNX model's."""
    if not checkpoint.is_file():
        where = repository_path(checkpoint)
        return {"skipped": f"no checkpoint at {where} (`make model` writes one)"}
    try:
        import torch

        from training.checkpoint import load_checkpoint
    except ImportError as error:
        return {"skipped": f"torch or training.checkpoint is not available: {error}"}
    cvae, _, _ = load_checkpoint(checkpoint)
    decoder = cvae.decoder.eval()
    previous_threads = torch.get_num_threads()
    rates = []
    try:
        with torch.inference_mode():
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for batch in batches:
                    feeds = random_feeds(model, batch)
                    z = torch.from_numpy(feeds[model.latent_input])
                    labels = torch.from_numpy(feeds[model.label_input])
                    rate = timed_rate(
                        functools.partial(decoder, z, labels),
                        batch,
                        variant="torch-eager",
                        threads=threads,
                        opt_level="eager",
                        min_seconds=min_seconds,
                        flops_per_image=flops_per_image,
                    )
                    rates.append(rate.as_dict())
            feeds = random_feeds(model, 64, seed=3)
            eager = decoder(
                torch.from_numpy(feeds[model.latent_input]),
                torch.from_numpy(feeds[model.label_input]),
            ).numpy()
    finally:
        torch.set_num_threads(previous_threads)
    onnx_images = session(model.onnx_path, threads=1).run([model.image_output], feeds)[0]
    return {
        "checkpoint": repository_path(checkpoint),
        "rates": rates,
        "max_abs_difference_vs_onnx": float(np.abs(eager - onnx_images).max()),
    }
