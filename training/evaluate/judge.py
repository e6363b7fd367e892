"""One object to score any decoder: the cached classifier plus the real-image features it needs.

judge = build_judge(load_mnist())
scores = judge.score(torch_decode(model.decoder), latent_dim=16, num_classes=10)
scores.label_accuracy.overall, scores.frechet.ratio
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.data import MnistSplits
from training.evaluate.classifier import ClassifierConfig, DigitClassifier
from training.evaluate.classifier_cache import load_or_train_classifier
from training.evaluate.sample_scores import (
    Decode,
    PriorSamples,
    RealFeatures,
    SampleScores,
    judge_samples,
    real_features,
    score_decoder,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleJudge:
    classifier: DigitClassifier
    classifier_test_accuracy: float
    classifier_cache_key: str
    classifier_train_seconds: float | None
    real: RealFeatures

    def score(
        self,
        decode: Decode,
        *,
        latent_dim: int,
        num_classes: int,
        per_label: int = 1000,
        seed: int = 0,
        temperature: float = 1.0,
        progress: bool = True,
    ) -> SampleScores:
        """Label accuracy and Fréchet distance (with floor and ratio) of prior samples."""
        return score_decoder(
            decode,
            self.classifier,
            self.real,
            latent_dim=latent_dim,
            num_classes=num_classes,
            per_label=per_label,
            seed=seed,
            temperature=temperature,
            progress=progress,
        )

    def judge(self, samples: PriorSamples, num_classes: int) -> SampleScores:
        """The same scores of samples drawn already (e.g. by another judge)."""
        return judge_samples(samples, self.classifier, self.real, num_classes)

    def describe(self) -> dict[str, object]:
        return {
            "test_accuracy": self.classifier_test_accuracy,
            "cache_key": self.classifier_cache_key,
            "train_seconds": self.classifier_train_seconds,
            "config": dataclasses.asdict(self.classifier.config),
        }


def build_judge(
    splits: MnistSplits,
    *,
    config: ClassifierConfig | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> SampleJudge:
    """The classifier (trained on the training split, cached) and the test/valid features."""
    trained = load_or_train_classifier(
        splits.train, splits.test, config=config, cache_dir=cache_dir, progress=progress
    )
    real = real_features(trained.model, splits.test[0], splits.valid[0])
    _LOGGER.info("Fréchet floor (valid vs test) %.4f", real.floor)
    return SampleJudge(
        classifier=trained.model,
        classifier_test_accuracy=trained.test_accuracy,
        classifier_cache_key=trained.cache_key,
        classifier_train_seconds=trained.train_seconds,
        real=real,
    )


def torch_decode(decoder: nn.Module) -> Decode:
    """Wrap a torch decoder (z, label) -> images as a numpy `Decode` callable."""

    @torch.no_grad()
    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        decoder.eval()
        images = decoder(torch.from_numpy(z), torch.from_numpy(labels.astype(np.int64)))
        return images.numpy()  # type: ignore[no-any-return]

    return decode
