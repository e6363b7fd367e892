"""Read a written dataset back (any format) as (images uint8 [N, H, W], labels int64 [N])."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from cvae.jobs.atomic import sha256_file
from cvae.jobs.writers import idx_names

MANIFEST_NAME = "manifest.json"


def manifest_path(out: Path, dataset_format: str | None = None) -> Path:
    """Where a dataset's manifest lives: beside an .npz file, inside a folder output.

    Without `dataset_format`, an existing folder means a folder output.
    """
    is_file = dataset_format == "npz" if dataset_format else not out.is_dir()
    return out.with_name(out.name + ".manifest.json") if is_file else out / MANIFEST_NAME


def read_manifest(out: Path, dataset_format: str | None = None) -> dict[str, Any]:
    return dict(json.loads(manifest_path(out, dataset_format).read_text()))


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["images"], data["labels"]


def read_idx(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = idx_names()
    raw_images = (folder / images_name).read_bytes()
    magic, count, height, width = np.frombuffer(raw_images[:16], ">u4")
    if magic != 0x803:
        raise ValueError(f"{folder / images_name}: bad magic {magic:#x}")
    images = np.frombuffer(raw_images[16:], np.uint8).reshape(int(count), int(height), int(width))
    raw_labels = (folder / labels_name).read_bytes()
    magic, label_count = np.frombuffer(raw_labels[:8], ">u4")
    if magic != 0x801 or label_count != count:
        raise ValueError(f"{folder / labels_name}: bad header")
    return images, np.frombuffer(raw_labels[8:], np.uint8).astype(np.int64)


def read_png_dir(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with open(folder / "labels.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    images = [np.asarray(Image.open(folder / row["file"])) for row in rows]
    labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
    return np.stack(images).astype(np.uint8), labels


def read_dataset(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read any output of `cvae generate`, recognised by its shape on disk."""
    if out.is_file():
        return read_npz(out)
    if (out / "labels.csv").is_file():
        return read_png_dir(out)
    if (out / idx_names()[0]).is_file():
        return read_idx(out)
    raise ValueError(f"{out}: not a dataset written by cvae generate")


def verify_manifest(out: Path) -> list[str]:
    """Files whose sha256 differs from the manifest (empty when everything matches)."""
    manifest = read_manifest(out)
    base = out.parent if out.is_file() else out
    return [
        name
        for name, digest in manifest["files"].items()
        if not (base / name).is_file() or sha256_file(base / name) != digest
    ]
