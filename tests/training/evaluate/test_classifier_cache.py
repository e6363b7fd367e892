"""The evaluator's classifier: reproducible, cached by recipe and data, never trusted blindly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.evaluate.conftest import SMALL_CLASSIFIER
from training.data import MnistSplits
from training.evaluate import classifier_cache
from training.evaluate.classifier import DigitClassifier, classify
from training.evaluate.classifier_cache import (
    TrainedClassifier,
    cache_key,
    load_or_train_classifier,
)

_TINY = dataclasses.replace(SMALL_CLASSIFIER, channels=(4, 8), feature_dim=16)


def _no_training(*args: object, **kwargs: object) -> DigitClassifier:
    raise AssertionError("the classifier was retrained instead of read from the cache")


def test_small_classifier_learns_digits(small_classifier: TrainedClassifier) -> None:
    assert small_classifier.test_accuracy > 0.9


def test_classify_gives_labels_and_penultimate_features(
    small_classifier: TrainedClassifier, small_splits: MnistSplits
) -> None:
    images = small_splits.test[0][:50]
    judged = classify(small_classifier.model, images.reshape(-1, 28, 28), batch_size=16)
    assert judged.predictions.shape == (50,) and judged.predictions.dtype == np.int64
    assert judged.features.shape == (50, SMALL_CLASSIFIER.feature_dim)
    np.testing.assert_array_equal(
        judged.predictions, classify(small_classifier.model, images).predictions
    )


def test_second_call_reads_the_cache(
    small_splits: MnistSplits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subset = (small_splits.train[0][:1000], small_splits.train[1][:1000])
    first = load_or_train_classifier(
        subset, small_splits.test, config=_TINY, cache_dir=tmp_path, progress=False
    )
    assert list(tmp_path.glob("classifier-*.pt"))
    monkeypatch.setattr(classifier_cache, "train_classifier", _no_training)
    second = load_or_train_classifier(
        subset, small_splits.test, config=_TINY, cache_dir=tmp_path, progress=False
    )
    assert second.test_accuracy == first.test_accuracy
    assert second.train_seconds == first.train_seconds
    for name, tensor in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], tensor)


def test_training_is_reproducible(small_splits: MnistSplits) -> None:
    subset = (small_splits.train[0][:500], small_splits.train[1][:500])
    first = classifier_cache.train_classifier(_TINY, subset, progress=False)
    second = classifier_cache.train_classifier(_TINY, subset, progress=False)
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], tensor)


def test_cache_key_depends_on_recipe_and_data(small_splits: MnistSplits) -> None:
    base = cache_key(_TINY, small_splits.train, small_splits.test)
    assert cache_key(_TINY, small_splits.train, small_splits.test) == base
    assert (
        cache_key(dataclasses.replace(_TINY, epochs=2), small_splits.train, small_splits.test)
        != base
    )
    changed = small_splits.train[0].copy()
    changed[0, 0] = 0.5
    assert cache_key(_TINY, (changed, small_splits.train[1]), small_splits.test) != base


def test_corrupt_cache_file_is_retrained(small_splits: MnistSplits, tmp_path: Path) -> None:
    subset = (small_splits.train[0][:500], small_splits.train[1][:500])
    key = cache_key(_TINY, subset, small_splits.test)
    (tmp_path / f"classifier-{key}.pt").write_bytes(b"not a checkpoint")
    trained = load_or_train_classifier(
        subset, small_splits.test, config=_TINY, cache_dir=tmp_path, progress=False
    )
    assert trained.test_accuracy > 0.1
    reread = torch.load(tmp_path / f"classifier-{key}.pt", weights_only=True)
    assert reread["key"] == key
