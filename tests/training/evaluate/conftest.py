"""Shared fixtures: MNIST once per session, a small fast classifier and its real-image features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import MnistSplits, load_mnist
from training.evaluate.classifier import ClassifierConfig
from training.evaluate.classifier_cache import TrainedClassifier, load_or_train_classifier
from training.evaluate.sample_scores import RealFeatures, real_features

# A classifier small and short enough for tests (a few seconds), still clearly better than chance.
SMALL_CLASSIFIER = ClassifierConfig(channels=(8, 16), feature_dim=32, epochs=1, lr=1e-2)
SMALL_TRAIN = 6000
SMALL_EVAL = 2000


@pytest.fixture(scope="session")
def mnist() -> MnistSplits:
    return load_mnist()


@pytest.fixture(scope="session")
def small_splits(mnist: MnistSplits) -> MnistSplits:
    def head(split: tuple[np.ndarray, np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
        return split[0][:count], split[1][:count]

    return MnistSplits(
        train=head(mnist.train, SMALL_TRAIN),
        valid=head(mnist.valid, SMALL_EVAL),
        test=head(mnist.test, SMALL_EVAL),
    )


@pytest.fixture(scope="session")
def classifier_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("classifier-cache")


@pytest.fixture(scope="session")
def small_classifier(small_splits: MnistSplits, classifier_cache_dir: Path) -> TrainedClassifier:
    return load_or_train_classifier(
        small_splits.train,
        small_splits.test,
        config=SMALL_CLASSIFIER,
        cache_dir=classifier_cache_dir,
        progress=False,
    )


@pytest.fixture(scope="session")
def small_real_features(
    small_classifier: TrainedClassifier, small_splits: MnistSplits
) -> RealFeatures:
    return real_features(small_classifier.model, small_splits.test[0], small_splits.valid[0])
