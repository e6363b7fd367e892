"""The evaluator's MNIST classifiers: small CNNs, independent of the generator.

A classifier judges generated digits twice: its predicted label gives the label accuracy, and
its penultimate layer gives the feature space of the Fréchet distance. Two architectures, so that
no single network decides: "pool-dense" (conv-pool, conv-pool, a dense feature layer: the
evaluator's first judge and the CAS network) and "strided" (three convolutions, two of them
stride 2, group norm and SiLU, no pooling).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier's architecture and its training recipe; together they key the cache."""

    channels: tuple[int, int] = (32, 64)
    # conv channels of the two 3x3 conv + 2x2 max-pool stages
    feature_dim: int = 128
    # width of the penultimate layer: the Fréchet feature space
    num_classes: int = 10
    image_side: int = 28
    # images are square, image_side x image_side, values in [0, 1]
    dropout: float = 0.25
    # before the last layer, training only
    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3
    # peak learning rate of the one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    seed: int = 0
    architecture: str = "pool-dense"
    # pool-dense: 2 conv (+BN, ReLU, 2x2 max-pool), dense feature layer, linear head;
    # strided: 5x5 conv (channels[0]), two stride-2 3x3 convs (channels[1]), group norm and
    # SiLU, no pooling, dense feature layer, linear head
    optimizer: str = "adamw"
    # adamw (one-cycle) | adam (one-cycle; AdamW with no weight decay is Adam)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture is one of {', '.join(ARCHITECTURES)}")
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError("optimizer is adamw or adam")


ARCHITECTURES = ("pool-dense", "strided")
# The second judge: another architecture, so that no single network decides.
SECOND_CLASSIFIER = ClassifierConfig(architecture="strided", lr=3e-3, epochs=3)


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class DigitClassifier(nn.Module):
    """pool-dense: conv-pool, conv-pool, a dense feature layer, then the class logits;
    strided: 5x5 conv, two stride-2 3x3 convs (group norm, SiLU, no pooling), a dense feature
    layer, then the logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        first, second = config.channels
        if config.architecture == "strided":
            side = config.image_side // 4
            self.trunk = nn.Sequential(
                nn.Conv2d(1, first, 5, padding=2),
                nn.GroupNorm(_groups(first), first),
                nn.SiLU(),
                nn.Conv2d(first, second, 3, stride=2, padding=1),
                nn.GroupNorm(_groups(second), second),
                nn.SiLU(),
                nn.Conv2d(second, second, 3, stride=2, padding=1),
                nn.GroupNorm(_groups(second), second),
                nn.SiLU(),
                nn.Flatten(),
                nn.Linear(second * side * side, config.feature_dim),
                nn.SiLU(),
            )
            self.head = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes)
            )
            return
        pooled_side = config.image_side // 4
        self.trunk = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1),
            nn.BatchNorm2d(first),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1),
            nn.BatchNorm2d(second),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(second * pooled_side * pooled_side, config.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes)
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images in [0, 1] -> (B, feature_dim) penultimate features."""
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images in [0, 1] -> (B, num_classes) logits."""
        return self.head(self.features(images))


@dataclass(frozen=True)
class Classification:
    """What the classifier says about a set of images."""

    predictions: np.ndarray  # int64 [N]
    features: np.ndarray  # float64 [N, feature_dim]


def as_image_batch(images: np.ndarray, image_side: int) -> torch.Tensor:
    """[N, side*side] or [N, side, side] (or [N, 1, side, side]) -> float32 (N, 1, side, side)."""
    array = np.asarray(images, dtype=np.float32)
    if array.size % (image_side * image_side) != 0 or array.ndim < 2:
        raise ValueError(f"expected images of {image_side}x{image_side} pixels, got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array)).reshape(-1, 1, image_side, image_side)


@torch.no_grad()
def classify(
    classifier: DigitClassifier, images: np.ndarray, batch_size: int = 1000
) -> Classification:
    """Predicted labels and penultimate features of `images` (pixels in [0, 1])."""
    classifier.eval()
    batch = as_image_batch(images, classifier.config.image_side)
    predictions, features = [], []
    for start in range(0, len(batch), batch_size):
        chunk_features = classifier.features(batch[start : start + batch_size])
        predictions.append(classifier.head(chunk_features).argmax(dim=1))
        features.append(chunk_features.double())
    if not predictions:
        return Classification(
            np.zeros(0, np.int64), np.zeros((0, classifier.config.feature_dim), np.float64)
        )
    return Classification(
        predictions=torch.cat(predictions).numpy().astype(np.int64),
        features=torch.cat(features).numpy(),
    )
