"""CAS and k-NN precision and recall, on real digits where the answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.training.evaluate.conftest import SMALL_CAS
from training.data import MnistSplits
from training.evaluate.usefulness import (
    classification_accuracy_score,
    gaussian_blur,
    precision_recall,
)


def test_identical_sets_have_full_precision_and_recall() -> None:
    points = np.random.default_rng(0).standard_normal((300, 5))
    found = precision_recall(points, points.copy())
    assert (found.precision, found.recall) == (1.0, 1.0)


def test_far_apart_sets_have_neither() -> None:
    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 5))
    found = precision_recall(real, rng.standard_normal((300, 5)) + 50.0)
    assert (found.precision, found.recall) == (0.0, 0.0)


def test_samples_of_one_mode_are_precise_but_miss_the_other() -> None:
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.standard_normal((300, 3)), rng.standard_normal((300, 3)) + 20.0])
    found = precision_recall(real, rng.standard_normal((600, 3)))
    assert found.precision > 0.9  # a few samples fall in the tails beyond the balls
    assert 0.4 < found.recall <= 0.5  # the mode at +20 is missed


def test_blur_spreads_ink_and_keeps_it() -> None:
    image = np.zeros((1, 28 * 28), np.float32)
    image[0, 14 * 28 + 14] = 1.0
    blurred = gaussian_blur(image, 1.0)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)
    assert 0.1 < blurred.max() < 0.2  # 1 / (2 pi sigma^2) = 0.159 at the centre


def test_cas_of_real_digits_is_the_reference_and_of_shuffled_labels_far_below(
    small_splits: MnistSplits, tmp_path: Path
) -> None:
    real = (small_splits.train[0][:3000], small_splits.train[1][:3000])
    same = classification_accuracy_score(
        real, real, small_splits.test, config=SMALL_CAS, seeds=(0, 1), cache_dir=tmp_path
    )
    assert same.synthetic == same.real  # the same data and seed train the same network
    assert same.gap_points == 0.0
    assert min(same.real) > 0.5
    assert set(same.synthetic_per_label) == set(range(10))
    shuffled_labels = np.random.default_rng(0).permutation(real[1])
    shuffled = classification_accuracy_score(
        (real[0], shuffled_labels),
        real,
        small_splits.test,
        config=SMALL_CAS,
        seeds=(0,),
        cache_dir=tmp_path,
    )
    assert shuffled.gap_points > 30.0
    assert shuffled.as_dict()["cas_gap_points_std"] == 0.0
