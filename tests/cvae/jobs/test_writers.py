"""Every dataset format reads back to the same images and labels, with deterministic bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvae.jobs.readers import read_idx, read_npz, read_png_dir
from cvae.jobs.writers import idx_names, write_idx, write_npz, write_png_dir


def _dataset(count: int = 25) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 3 * 3).astype(np.int64)
    return [images[:10], images[10:20], images[20:]], images, labels


def _write(fmt: str, folder: Path) -> tuple[Path, dict[str, str]]:
    chunks, _, labels = _dataset()
    if fmt == "npz":
        path = folder / "data.npz"
        return path, write_npz(path, chunks, labels)
    path = folder / fmt
    path.mkdir()
    writer = write_idx if fmt == "idx" else write_png_dir
    return path, writer(path, chunks, labels)


_READERS = {"npz": read_npz, "idx": read_idx, "png-dir": read_png_dir}


@pytest.mark.parametrize("fmt", ["npz", "idx", "png-dir"])
def test_format_round_trips(fmt: str, tmp_path: Path) -> None:
    _, images, labels = _dataset()
    path, _ = _write(fmt, tmp_path)
    read_images, read_labels = _READERS[fmt](path)
    assert read_images.dtype == np.uint8
    assert read_labels.dtype == np.int64
    assert np.array_equal(read_images, images)
    assert np.array_equal(read_labels, labels)


@pytest.mark.parametrize("fmt", ["npz", "idx", "png-dir"])
def test_same_images_give_byte_identical_files(fmt: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, first = _write(fmt, tmp_path / "a")
    _, second = _write(fmt, tmp_path / "b")
    assert first == second
    assert len(first) >= 1


def test_npz_has_the_documented_arrays(tmp_path: Path) -> None:
    path, _ = _write("npz", tmp_path)
    with np.load(path) as data:
        assert sorted(data.files) == ["images", "labels"]
        assert data["images"].shape == (25, 28, 28)


def test_idx_headers_follow_the_mnist_layout(tmp_path: Path) -> None:
    path, _ = _write("idx", tmp_path)
    images_name, labels_name = idx_names()
    assert images_name.endswith("-images-idx3-ubyte")
    assert labels_name.endswith("-labels-idx1-ubyte")
    header = np.frombuffer((path / images_name).read_bytes()[:16], ">u4").tolist()
    assert header == [0x803, 25, 28, 28]
    assert (path / images_name).stat().st_size == 16 + 25 * 28 * 28
    assert np.frombuffer((path / labels_name).read_bytes()[:8], ">u4").tolist() == [0x801, 25]


def test_png_dir_layout_is_label_folders_and_a_csv(tmp_path: Path) -> None:
    path, hashes = _write("png-dir", tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["0", "3", "6", "labels.csv"]
    lines = (path / "labels.csv").read_text().splitlines()
    assert lines[0] == "file,label"
    assert lines[1:3] == ["0/000000.png,0", "3/000001.png,3"]
    assert len(hashes) == 26
