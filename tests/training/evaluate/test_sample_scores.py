"""Label accuracy, Fréchet distance and prior sampling, on generic numpy decoders."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import MnistSplits
from training.evaluate.classifier_cache import TrainedClassifier
from training.evaluate.sample_scores import (
    Decode,
    RealFeatures,
    frechet_distance,
    label_accuracy,
    sample_prior,
    score_decoder,
)


def _real_image_decoder(images: np.ndarray, labels: np.ndarray, shift: int = 0) -> Decode:
    """A stand-in generator: a real image of label (requested + shift) % 10, picked by z."""
    by_label = [images[labels == digit] for digit in range(10)]

    def decode(z: np.ndarray, requested: np.ndarray) -> np.ndarray:
        assert z.dtype == np.float32 and requested.dtype == np.int64
        picks = (np.abs(z[:, 0]) * 1e4).astype(np.int64)
        rows = [
            by_label[(label + shift) % 10][pick % len(by_label[(label + shift) % 10])]
            for label, pick in zip(requested, picks, strict=True)
        ]
        return np.stack(rows).reshape(-1, 28, 28)

    return decode


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    features = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_scaled_and_shifted_features() -> None:
    # b = c·a + s gives Σb = c²Σa, so d² = |s + (c−1)μa|² + (1−c)² tr(Σa) exactly.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6))
    scale, shift = 1.7, rng.normal(size=6)
    b = scale * a + shift
    mean_gap = shift + (scale - 1) * a.mean(axis=0)
    expected = float(mean_gap @ mean_gap + (1 - scale) ** 2 * np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_handles_singular_covariance() -> None:
    rng = np.random.default_rng(2)
    a = np.maximum(rng.normal(size=(300, 10)), 0.0)
    a[:, 3] = 0.0  # a dead ReLU unit: singular covariance
    b = np.maximum(rng.normal(loc=0.5, size=(300, 10)), 0.0)
    b[:, 3] = 0.0
    distance = frechet_distance(a, b)
    assert np.isfinite(distance) and distance > 0


def test_label_accuracy_overall_and_per_label() -> None:
    requested = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    accuracy = label_accuracy(predicted, requested, num_classes=3)
    assert accuracy.overall == pytest.approx(6 / 8)
    assert accuracy.per_label == {0: 0.75, 1: 0.5, 2: 1.0}
    assert accuracy.worst == 0.5


def test_label_accuracy_refuses_mismatched_vectors() -> None:
    with pytest.raises(ValueError):
        label_accuracy(np.array([0, 1]), np.array([0, 1, 2]), num_classes=3)


def test_prior_samples_are_seeded_and_ordered_by_label() -> None:
    seen: list[np.ndarray] = []

    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        seen.append(z.copy())
        return np.broadcast_to(z[:, :1, None], (len(z), 28, 28)).copy()

    first = sample_prior(
        decode, latent_dim=4, num_classes=3, per_label=5, seed=7, batch_size=4, progress=False
    )
    second = sample_prior(decode, latent_dim=4, num_classes=3, per_label=5, seed=7, progress=False)
    other = sample_prior(decode, latent_dim=4, num_classes=3, per_label=5, seed=8, progress=False)
    assert first.images.shape == (15, 28, 28)
    assert first.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    np.testing.assert_array_equal(first.images, second.images)
    assert not np.array_equal(first.images, other.images)
    assert [len(z) for z in seen[:4]] == [4, 4, 4, 3]  # batched as asked


def test_temperature_scales_the_latent() -> None:
    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.broadcast_to(z[:, :1, None], (len(z), 28, 28)).copy()

    cold = sample_prior(
        decode, latent_dim=2, num_classes=2, per_label=3, temperature=0.5, progress=False
    )
    warm = sample_prior(
        decode, latent_dim=2, num_classes=2, per_label=3, temperature=1.0, progress=False
    )
    np.testing.assert_allclose(cold.images, 0.5 * warm.images, rtol=1e-6)


def test_decoder_returning_too_few_images_is_an_error() -> None:
    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.zeros((len(z) - 1, 28, 28), np.float32)

    with pytest.raises(ValueError, match="images"):
        sample_prior(decode, latent_dim=2, num_classes=2, per_label=3, progress=False)


def test_real_digits_of_the_requested_label_score_well(
    small_splits: MnistSplits,
    small_classifier: TrainedClassifier,
    small_real_features: RealFeatures,
) -> None:
    decode = _real_image_decoder(*small_splits.valid)
    scores = score_decoder(
        decode,
        small_classifier.model,
        small_real_features,
        latent_dim=4,
        num_classes=10,
        per_label=100,
        progress=False,
    )
    assert scores.label_accuracy.overall > 0.85
    assert scores.frechet.ratio < 3.0


def test_real_digits_of_the_wrong_label_score_zero_accuracy(
    small_splits: MnistSplits,
    small_classifier: TrainedClassifier,
    small_real_features: RealFeatures,
) -> None:
    decode = _real_image_decoder(*small_splits.valid, shift=1)
    scores = score_decoder(
        decode,
        small_classifier.model,
        small_real_features,
        latent_dim=4,
        num_classes=10,
        per_label=100,
        progress=False,
    )
    assert scores.label_accuracy.overall < 0.15
    # the images are still real digits in the right proportions: Fréchet stays near the floor
    assert scores.frechet.ratio < 3.0


def test_blank_images_are_far_from_real_digits(
    small_classifier: TrainedClassifier, small_real_features: RealFeatures
) -> None:
    def blank(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.zeros((len(z), 28, 28), np.float32)

    scores = score_decoder(
        blank,
        small_classifier.model,
        small_real_features,
        latent_dim=4,
        num_classes=10,
        per_label=50,
        progress=False,
    )
    assert scores.frechet.ratio > 20.0
    assert scores.label_accuracy.worst == 0.0
