"""Shared fixtures: MNIST once per session, a small fast classifier and its real-image features."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import save_checkpoint
from training.config import ModelConfig, TrainConfig
from training.data import MnistSplits, load_mnist
from training.evaluate.classifier import ClassifierConfig
from training.evaluate.classifier_cache import TrainedClassifier, load_or_train_classifier
from training.evaluate.sample_scores import RealFeatures, real_features
from training.model import CVAE

# A classifier small and short enough for tests (a few seconds), still clearly better than chance.
SMALL_CLASSIFIER = ClassifierConfig(channels=(8, 16), feature_dim=32, epochs=1, lr=1e-2)
SMALL_SECOND = ClassifierConfig(
    architecture="strided", channels=(8, 16), feature_dim=32, epochs=1, lr=1e-2
)
SMALL_CAS = ClassifierConfig(
    channels=(8, 16), feature_dim=32, epochs=3, lr=3e-3, optimizer="adam", weight_decay=0.0
)
SMALL_TRAIN = 6000
SMALL_EVAL = 2000


@pytest.fixture(scope="package")
def mnist() -> MnistSplits:
    return load_mnist()


@pytest.fixture(scope="package")
def small_splits(mnist: MnistSplits) -> MnistSplits:
    def head(split: tuple[np.ndarray, np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
        return split[0][:count], split[1][:count]

    return MnistSplits(
        train=head(mnist.train, SMALL_TRAIN),
        valid=head(mnist.valid, SMALL_EVAL),
        test=head(mnist.test, SMALL_EVAL),
    )


@pytest.fixture(scope="package")
def classifier_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("classifier-cache")


@pytest.fixture(scope="package")
def small_classifier(small_splits: MnistSplits, classifier_cache_dir: Path) -> TrainedClassifier:
    return load_or_train_classifier(
        small_splits.train,
        small_splits.test,
        config=SMALL_CLASSIFIER,
        cache_dir=classifier_cache_dir,
        progress=False,
    )


@pytest.fixture(scope="package")
def small_real_features(
    small_classifier: TrainedClassifier, small_splits: MnistSplits
) -> RealFeatures:
    return real_features(small_classifier.model, small_splits.test[0], small_splits.valid[0])


SMALL_MODEL = ModelConfig(
    latent_dim=4,
    encoder_channels=(8, 8),
    encoder_hidden=32,
    decoder_channels=(8, 8, 8),
    prior="standard",  # the closed-form KL; tests/training/evaluate/test_likelihood.py has a flow
)


@pytest.fixture(scope="package")
def small_cvae() -> CVAE:
    torch.manual_seed(0)
    return CVAE(SMALL_MODEL).eval()


@pytest.fixture(scope="package")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_cvae: CVAE) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "small.pt"
    save_checkpoint(path, small_cvae, TrainConfig(model=SMALL_MODEL, epochs=1))
    return path


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine run far faster on one thread than on two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
