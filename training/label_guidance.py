"""Label guidance: an auxiliary classifier, trained here on real images, that scores prior samples.

The term added to the training loss is the cross-entropy between the requested label and this
classifier's reading of decoded prior samples, z ~ N(0, I): it pushes the decoder to draw the digit
it was asked for everywhere under the prior, not only where the encoder puts real images. The
classifier is small, lives only during training, and is not the evaluator's (which is held out).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GuidanceClassifier(nn.Module):
    """A small conv classifier: (N, 1, H, W) in [0, 1] -> logits (N, num_classes)."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int], width: int = 32) -> None:
        super().__init__()
        height, side = image_shape
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(2 * width * (height // 4) * (side // 4), num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # type: ignore[no-any-return]


class LabelGuidance:
    """Trains its classifier on real batches and turns decoded prior samples into a loss."""

    def __init__(self, num_classes: int, image_shape: tuple[int, int], lr: float) -> None:
        self.classifier = GuidanceClassifier(num_classes, image_shape)
        self.optimizer = torch.optim.AdamW(self.classifier.parameters(), lr=lr)
        self.num_classes = num_classes

    def fit_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimisation step of the classifier on real images; returns its loss."""
        self.classifier.train()
        loss = F.cross_entropy(self.classifier(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def sample_loss(
        self, samples: torch.Tensor, labels: torch.Tensor, confidence: float = 0.0
    ) -> torch.Tensor:
        """Cross-entropy of `labels` for `samples` (N, H, W); gradients reach the samples only.

        With `confidence` c in (0, 1), a sample the classifier already reads as its label with
        probability at least c adds nothing (each sample's term is max(0, CE + log c)): the
        guidance then repairs samples that do not read as their label without pulling the ones
        that do toward the classifier's most confident prototypes. 0: plain cross-entropy.
        """
        self.classifier.eval()
        for parameter in self.classifier.parameters():
            parameter.requires_grad_(False)
        try:
            logits = self.classifier(samples.unsqueeze(1))
            if confidence <= 0:
                return F.cross_entropy(logits, labels)
            per_sample = F.cross_entropy(logits.float(), labels, reduction="none")
            return torch.clamp(per_sample + math.log(confidence), min=0).mean()
        finally:
            for parameter in self.classifier.parameters():
                parameter.requires_grad_(True)

    def state_dict(self) -> dict[str, object]:
        return {
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.classifier.load_state_dict(state["classifier"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
