"""Sample quality of a decoder variant through the project's evaluator (training/evaluate/).

The evaluator scores any `decode(z, labels) -> images` callable; here that callable runs an ONNX
file in onnxruntime, so float32 and int8 variants are judged by the same classifier on the same
prior draws (same seed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.floor import session
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)
# Shipping rule: a variant may ship only within these bounds of float32.
MAX_ACCURACY_DROP_POINTS = 0.3
MAX_FRECHET_INCREASE = 0.10


@dataclass(frozen=True)
class Quality:
    label_accuracy: float
    frechet: float
    frechet_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "label_accuracy": self.label_accuracy,
            "frechet": self.frechet,
            "frechet_ratio": self.frechet_ratio,
        }


def onnx_decode(model: ModelSpec, path: Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    runtime = session(path, threads=2)

    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        feeds = {
            model.latent_input: z.astype(np.float32),
            model.label_input: labels.astype(np.int64),
        }
        return runtime.run([model.image_output], feeds)[0]  # type: ignore[no-any-return]

    return decode


class Judge:
    """The evaluator's classifier and real-image features, loaded once for every variant."""

    def __init__(self, per_label: int) -> None:
        # Imported here: torch and MNIST are needed only for quality, not for speed.
        from training.data import load_mnist
        from training.evaluate.judge import build_judge

        self._judge = build_judge(load_mnist(), progress=False)
        self._per_label = per_label

    def score(self, model: ModelSpec, path: Path) -> Quality:
        scores = self._judge.score(
            onnx_decode(model, path),
            latent_dim=model.latent_dim,
            num_classes=model.num_classes,
            per_label=self._per_label,
            seed=0,
            progress=False,
        )
        return Quality(
            label_accuracy=float(scores.label_accuracy.overall),
            frechet=float(scores.frechet.distance),
            frechet_ratio=float(scores.frechet.ratio),
        )


def load_judge(per_label: int) -> tuple[Judge | None, str]:
    """The judge, or None and why not (the evaluator is not in this checkout, or failed)."""
    try:
        return Judge(per_label), ""
    except ImportError as error:
        return None, f"the evaluator (training/evaluate/judge.py) is not available: {error}"
    except Exception as error:  # e.g. MNIST missing: quality is then reported as unmeasured
        _LOGGER.warning("evaluator failed to load: %s", error)
        return None, f"the evaluator failed to load: {error}"


def may_ship(reference: Quality, candidate: Quality) -> bool:
    """Label accuracy within 0.3 points and Fréchet within 10% of float32's."""
    accuracy_drop_points = (reference.label_accuracy - candidate.label_accuracy) * 100
    frechet_growth = (candidate.frechet - reference.frechet) / reference.frechet
    return (
        accuracy_drop_points <= MAX_ACCURACY_DROP_POINTS and frechet_growth <= MAX_FRECHET_INCREASE
    )
