"""Real images to send to the service: one PNG, or a dataset in any format `cvae generate`
writes (npz, png-dir, idx; an idx pair of any prefix, e.g. MNIST's own t10k files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvae.jobs.readers import read_npz, read_png_dir

_IDX_IMAGES = "-images-idx3-ubyte"
_IDX_LABELS = "-labels-idx1-ubyte"


def read_images(path: Path, label: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(images uint8 [N, H, W], labels int64 [N] or None). A single PNG takes `label`."""
    if path.is_file() and path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
        labels = None if label is None else np.array([label], dtype=np.int64)
        return pixels[None], labels
    if label is not None:
        raise ValueError(f"{path}: --label is for a single PNG; a dataset has its own labels")
    if path.is_file():
        images, labels = read_npz(path)
        return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    if (path / "labels.csv").is_file():
        return read_png_dir(path)
    if path.is_dir():
        return _read_idx_pair(path)
    raise ValueError(f"{path}: no such file or folder")


def _read_idx_pair(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    found = sorted(folder.glob(f"*{_IDX_IMAGES}"))
    if len(found) != 1:
        raise ValueError(
            f"{folder}: not a dataset (no labels.csv, and {len(found)} *{_IDX_IMAGES} files)"
        )
    images_path = found[0]
    labels_path = folder / images_path.name.replace(_IDX_IMAGES, _IDX_LABELS)
    raw = images_path.read_bytes()
    magic, count, height, width = (int(v) for v in np.frombuffer(raw[:16], ">u4"))
    if magic != 0x803 or len(raw) != 16 + count * height * width:
        raise ValueError(f"{images_path}: not an IDX uint8 image file")
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, height, width)
    raw_labels = labels_path.read_bytes()
    magic, label_count = (int(v) for v in np.frombuffer(raw_labels[:8], ">u4"))
    if magic != 0x801 or label_count != count:
        raise ValueError(f"{labels_path}: not the IDX label file of {images_path.name}")
    return images, np.frombuffer(raw_labels, np.uint8, offset=8).astype(np.int64)
