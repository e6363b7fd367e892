"""`cvae restyle`: real images drawn in other labels, as a PNG grid or a dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvae.client import Client
from cvae.jobs.atomic import (
    OutputError,
    atomic_dir,
    describe_os_error,
    remove_stale_temporaries,
    temporary_sibling,
)
from cvae.jobs.preview import save_png, tile
from cvae.jobs.writers import WRITERS

MAX_GRID_ROWS = 100


def restyled_chunks(
    client: Client,
    images: np.ndarray,
    labels: np.ndarray,
    targets: tuple[int, ...],
    per_request: int,
    model_version: str,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """uint8 [n * T, H, W] per request, image-major, in dataset order."""
    step = max(1, per_request // len(targets))
    with tqdm(total=len(images), unit="img", disable=not progress) as bar:
        for start in range(0, len(images), step):
            stop = min(start + step, len(images))
            result = client.restyle(
                images[start:stop],
                labels[start:stop],
                targets,
                model_version=model_version,
                omit_latents=True,
            )
            if result.model_version != model_version:
                raise RuntimeError(f"server answered with model version {result.model_version}")
            bar.update(stop - start)
            yield result.images


def restyle_grid(
    client: Client,
    images: np.ndarray,
    labels: np.ndarray,
    targets: tuple[int, ...],
    per_request: int,
    model_version: str,
) -> np.ndarray:
    """One row per image: the image itself, then it in each target label."""
    if len(images) > MAX_GRID_ROWS:
        raise ValueError(
            f"a grid shows at most {MAX_GRID_ROWS} images ({len(images)} given); "
            "write a dataset instead (--out DIR or FILE.npz)"
        )
    restyled = np.concatenate(
        list(restyled_chunks(client, images, labels, targets, per_request, model_version))
    ).reshape(len(images), len(targets), *images.shape[1:])
    rows = np.concatenate([images[:, None], restyled], axis=1)
    return tile(rows.reshape(-1, *images.shape[1:]), len(images), len(targets) + 1)


def write_dataset(chunks: Iterator[np.ndarray], labels: np.ndarray, out: Path, fmt: str) -> None:
    """The restyled images and their target labels at `out`; nothing is left there on failure."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out.parent)
        if out.exists():
            raise OutputError(f"{out} already exists; remove it or choose another --out")
        if fmt == "npz":
            tmp = temporary_sibling(out)
            try:
                WRITERS["npz"](tmp, chunks, labels)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
            return
        with atomic_dir(out) as folder:
            WRITERS[fmt](folder, chunks, labels)
    except OSError as error:
        raise OutputError(describe_os_error(error, out)) from error


def run_restyle(
    client: Client,
    images: np.ndarray,
    labels: np.ndarray,
    targets: tuple[int, ...],
    out: Path,
    fmt: str | None,
    model_version: str | None,
    progress: bool,
) -> str:
    """Write the grid (out ending in .png) or the dataset; returns what was written."""
    info = client.model_info(model_version)
    per_request = info.max_images_per_request
    if out.suffix.lower() == ".png" and fmt is None:
        picture = restyle_grid(client, images, labels, targets, per_request, info.version)
        save_png(picture, out)
        return f"{out}: {len(images)} images x {len(targets)} labels (grid)"
    fmt = fmt or ("npz" if out.suffix.lower() == ".npz" else "png-dir")
    chunks = restyled_chunks(client, images, labels, targets, per_request, info.version, progress)
    write_dataset(chunks, np.tile(np.asarray(targets, dtype=np.int64), len(images)), out, fmt)
    return f"{out}: {len(images) * len(targets)} images ({fmt})"
