"""Scores of generated digits: label accuracy and Fréchet distance in classifier feature space.

Everything here works from a generic `decode(z, labels) -> images` callable on numpy arrays, so
the same scores apply to a PyTorch decoder, an ONNX model in onnxruntime, or a quantized variant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from training.evaluate.classifier import DigitClassifier, classify

_LOGGER = logging.getLogger(__name__)

# z float32 [N, latent_dim], labels int64 [N] -> images float32 [N, H, W] (or [N, H*W]) in [0, 1]
Decode = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PriorSamples:
    images: np.ndarray  # float32 [N, H, W]
    labels: np.ndarray  # int64 [N]: the requested labels


@dataclass(frozen=True)
class LabelAccuracy:
    overall: float
    per_label: dict[int, float]

    @property
    def worst(self) -> float:
        return min(self.per_label.values())


@dataclass(frozen=True)
class FrechetScore:
    distance: float  # generated vs the reference (test) images
    floor: float  # real vs real: validation vs test images
    ratio: float  # distance / floor


def sample_prior(
    decode: Decode,
    *,
    latent_dim: int,
    num_classes: int,
    per_label: int,
    seed: int = 0,
    temperature: float = 1.0,
    batch_size: int = 500,
    progress: bool = True,
) -> PriorSamples:
    """Decode `per_label` draws of z ~ N(0, temperature² I) for every label, seeded.

    The labels run 0,0,...,1,1,... and z comes from one numpy stream, so a seed gives the same
    z to every decoder it is used with.
    """
    if per_label <= 0 or num_classes <= 0 or latent_dim <= 0:
        raise ValueError("per_label, num_classes and latent_dim must be positive")
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_label)
    z = np.random.default_rng(seed).standard_normal((len(labels), latent_dim)).astype(np.float32)
    z *= np.float32(temperature)
    chunks = []
    for start in tqdm(
        range(0, len(labels), batch_size), desc="prior samples", unit="batch", disable=not progress
    ):
        chunk = np.asarray(
            decode(z[start : start + batch_size], labels[start : start + batch_size])
        )
        chunks.append(chunk.astype(np.float32, copy=False))
    images = np.concatenate(chunks)
    if len(images) != len(labels):
        raise ValueError(f"decode returned {len(images)} images for {len(labels)} requests")
    return PriorSamples(images=images, labels=labels)


def label_accuracy(predicted: np.ndarray, requested: np.ndarray, num_classes: int) -> LabelAccuracy:
    """Share of images whose predicted label is the requested one, overall and per label."""
    predicted, requested = np.asarray(predicted), np.asarray(requested)
    if predicted.shape != requested.shape or predicted.ndim != 1 or len(predicted) == 0:
        raise ValueError(
            f"need two equal, non-empty label vectors: {predicted.shape}, {requested.shape}"
        )
    correct = predicted == requested
    per_label = {
        label: float(correct[requested == label].mean())
        for label in range(num_classes)
        if np.any(requested == label)
    }
    return LabelAccuracy(overall=float(correct.mean()), per_label=per_label)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of [N, D] features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least two feature vectors [N, D], got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    d² = |μa − μb|² + tr(Σa) + tr(Σb) − 2 tr((Σa^½ Σb Σa^½)^½); the last trace is taken from
    the eigenvalues of the symmetric matrix Σa^½ Σb Σa^½, which stays real and stable when the
    covariances are singular (ReLU features often are).
    """
    mean_a, cov_a = feature_statistics(features_a)
    mean_b, cov_b = feature_statistics(features_b)
    if mean_a.shape != mean_b.shape:
        raise ValueError(f"feature sizes differ: {mean_a.shape} vs {mean_b.shape}")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    distance = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b))
    return max(distance - 2.0 * trace_root, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_score(
    generated_features: np.ndarray, reference_features: np.ndarray, floor: float
) -> FrechetScore:
    distance = frechet_distance(generated_features, reference_features)
    return FrechetScore(
        distance=distance, floor=floor, ratio=distance / floor if floor > 0 else float("inf")
    )


@dataclass(frozen=True)
class RealFeatures:
    """Classifier features of real images, computed once and reused for many models."""

    reference: np.ndarray  # test images [N, D]: what samples are compared with
    floor: float  # Fréchet distance between validation and test images


def real_features(
    classifier: DigitClassifier, test_images: np.ndarray, valid_images: np.ndarray
) -> RealFeatures:
    reference = classify(classifier, test_images).features
    floor = frechet_distance(classify(classifier, valid_images).features, reference)
    return RealFeatures(reference=reference, floor=floor)


@dataclass(frozen=True)
class SampleScores:
    label_accuracy: LabelAccuracy
    frechet: FrechetScore
    samples: PriorSamples
    features: np.ndarray | None = None  # the classifier's features of the samples [N, D]


def judge_samples(
    samples: PriorSamples, classifier: DigitClassifier, real: RealFeatures, num_classes: int
) -> SampleScores:
    """Label accuracy and Fréchet distance of given samples under one classifier."""
    judged = classify(classifier, samples.images)
    accuracy = label_accuracy(judged.predictions, samples.labels, num_classes)
    frechet = frechet_score(judged.features, real.reference, real.floor)
    _LOGGER.info(
        "%s: label accuracy %.4f (worst label %.4f), Fréchet %.3f = %.2f x floor %.3f",
        classifier.config.architecture,
        accuracy.overall,
        accuracy.worst,
        frechet.distance,
        frechet.ratio,
        frechet.floor,
    )
    return SampleScores(accuracy, frechet, samples, judged.features)


def score_decoder(
    decode: Decode,
    classifier: DigitClassifier,
    real: RealFeatures,
    *,
    latent_dim: int,
    num_classes: int,
    per_label: int = 1000,
    seed: int = 0,
    temperature: float = 1.0,
    progress: bool = True,
) -> SampleScores:
    """Label accuracy and Fréchet distance of `per_label` prior samples per label."""
    samples = sample_prior(
        decode,
        latent_dim=latent_dim,
        num_classes=num_classes,
        per_label=per_label,
        seed=seed,
        temperature=temperature,
        progress=progress,
    )
    return judge_samples(samples, classifier, real, num_classes)
