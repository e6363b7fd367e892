"""Do the samples teach what real digits teach? CAS and k-NN precision and recall.

Classification Accuracy Score (Ravuri & Vinyals, NeurIPS 2019): one fixed small CNN
(`CAS_CLASSIFIER`: 2 conv + 2 linear layers, Adam, 6 epochs) is trained on N labelled prior
samples (T = 1, balanced labels) and tested on the real test split; the same CNN trained on N real
training digits is the reference, and the gap between the two accuracies, in points, is the
score. Each is trained once per seed (mean and spread over the seeds); the per-label test
accuracy of the sample-trained CNN says which digits the samples fail to teach.

Precision and recall (Kynkäänniemi et al., NeurIPS 2019): each set of feature vectors is a union
of balls, one per point, reaching its k-th nearest neighbour in the same set. Precision is the
share of generated points inside the real manifold, recall the share of real points inside the
generated one. `blur_check` scores Gaussian-blurred real digits the same way: a feature space in
which blurred real digits lose recall would punish blur instead of missing styles.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.data import MnistSplits
from training.evaluate.classifier import ClassifierConfig, classify
from training.evaluate.classifier_cache import (
    Split,
    accuracy,
    load_or_train_classifier,
    train_classifier,
)
from training.evaluate.judge import SampleJudge
from training.evaluate.sample_scores import Decode, PriorSamples, SampleScores, sample_prior

_LOGGER = logging.getLogger(__name__)

# The CAS network: a pool-dense CNN (3x3 conv 16 - BN - ReLU - max-pool, 3x3 conv 32 - BN - ReLU -
# max-pool, dense 128 - ReLU, dropout 0.25, linear 10), Adam with a one-cycle learning rate
# peaking at 3e-3, batch 128, 6 epochs. Half the evaluator's widths keep its training cheap.
CAS_CLASSIFIER = ClassifierConfig(channels=(16, 32), epochs=6, optimizer="adam", weight_decay=0.0)
CAS_SAMPLES = 50_000
CAS_SEEDS = (0, 1)
PR_NEIGHBOURS = 3
PR_POINTS = 10_000
BLUR_SIGMAS = (0.5, 1.0)


@dataclass(frozen=True)
class CasResult:
    """Test accuracies of the CNN trained on samples and on real digits, one per seed."""

    seeds: tuple[int, ...]
    synthetic: tuple[float, ...]
    real: tuple[float, ...]
    synthetic_per_label: dict[int, float]  # mean over seeds
    train_images: int
    seconds_per_training: float  # mean wall time of one training on the samples

    @property
    def gap_points(self) -> float:
        return 100.0 * (float(np.mean(self.real)) - float(np.mean(self.synthetic)))

    def as_dict(self) -> dict[str, object]:
        gaps = [100.0 * (r - s) for r, s in zip(self.real, self.synthetic, strict=True)]
        return {
            "cas_accuracy": float(np.mean(self.synthetic)),
            "cas_accuracy_std": float(np.std(self.synthetic, ddof=1))
            if len(self.seeds) > 1
            else 0.0,
            "cas_real_accuracy": float(np.mean(self.real)),
            "cas_real_accuracy_std": float(np.std(self.real, ddof=1))
            if len(self.seeds) > 1
            else 0.0,
            "cas_gap_points": self.gap_points,
            "cas_gap_points_std": float(np.std(gaps, ddof=1)) if len(gaps) > 1 else 0.0,
            "cas_per_seed": [
                {"seed": seed, "synthetic": s, "real": r}
                for seed, s, r in zip(self.seeds, self.synthetic, self.real, strict=True)
            ],
            "cas_per_label": {str(k): v for k, v in self.synthetic_per_label.items()},
            "cas_worst_label": min(
                self.synthetic_per_label, key=self.synthetic_per_label.__getitem__
            ),
            "cas_train_images": self.train_images,
            "cas_seconds_per_training": self.seconds_per_training,
        }


def _spread(values: tuple[float, ...] | list[float]) -> float:
    """Sample standard deviation over the seeds (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def per_label_accuracy(model: torch.nn.Module, split: Split, num_classes: int) -> dict[int, float]:
    predictions = classify(model, split[0]).predictions  # type: ignore[arg-type]
    labels = np.asarray(split[1])
    return {k: float(np.mean(predictions[labels == k] == k)) for k in range(num_classes)}


def balanced_samples(
    decode: Decode,
    *,
    latent_dim: int,
    num_classes: int,
    count: int = CAS_SAMPLES,
    seed: int = 0,
    progress: bool = False,
) -> Split:
    """`count` prior samples at T = 1, count / num_classes per label, flattened [N, H*W]."""
    samples = sample_prior(
        decode,
        latent_dim=latent_dim,
        num_classes=num_classes,
        per_label=count // num_classes,
        seed=seed,
        progress=progress,
    )
    return samples.images.reshape(len(samples.labels), -1), samples.labels


def classification_accuracy_score(
    synthetic: Split,
    real_train: Split,
    test: Split,
    *,
    config: ClassifierConfig = CAS_CLASSIFIER,
    seeds: tuple[int, ...] = CAS_SEEDS,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> CasResult:
    """Train the CAS network on `synthetic` and (cached) on `real_train` once per seed; test
    both on `test`. The two training sets should be the same size."""
    num_classes = config.num_classes
    synthetic_accuracy, real_accuracy, per_label, seconds = [], [], [], []
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        real = load_or_train_classifier(
            real_train, test, config=seeded, cache_dir=cache_dir, progress=progress
        )
        real_accuracy.append(real.test_accuracy)
        started = time.monotonic()
        model = train_classifier(seeded, synthetic, progress=progress)
        seconds.append(time.monotonic() - started)
        synthetic_accuracy.append(accuracy(model, test))
        per_label.append(per_label_accuracy(model, test, num_classes))
        _LOGGER.info(
            "CAS seed %d: trained on samples %.4f, on real digits %.4f (%.0f s)",
            seed, synthetic_accuracy[-1], real_accuracy[-1], seconds[-1],
        )  # fmt: skip
    return CasResult(
        seeds=tuple(seeds),
        synthetic=tuple(synthetic_accuracy),
        real=tuple(real_accuracy),
        synthetic_per_label={
            k: float(np.mean([row[k] for row in per_label])) for k in range(num_classes)
        },
        train_images=len(synthetic[1]),
        seconds_per_training=float(np.mean(seconds)),
    )


def _kth_neighbour_radii(points: torch.Tensor, k: int, chunk: int = 2000) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the same set."""
    radii = []
    for start in range(0, len(points), chunk):
        distances = torch.cdist(points[start : start + chunk], points)
        # the point itself is at distance 0: the (k+1)-th smallest is the k-th neighbour
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _covered(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> np.ndarray:
    """For each query: is it inside any ball (centre, radius)?"""
    inside = []
    for start in range(0, len(queries), 2000):
        distances = torch.cdist(queries[start : start + 2000], centres)
        inside.append((distances <= radii[None, :]).any(dim=1))
    return torch.cat(inside).numpy()


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float


def precision_recall(
    real_features: np.ndarray, generated_features: np.ndarray, k: int = PR_NEIGHBOURS
) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of two feature sets [N, D]."""
    real = torch.from_numpy(np.asarray(real_features, dtype=np.float32))
    generated = torch.from_numpy(np.asarray(generated_features, dtype=np.float32))
    if len(real) <= k or len(generated) <= k:
        raise ValueError(f"need more than k={k} points in each set")
    real_radii = _kth_neighbour_radii(real, k)
    generated_radii = _kth_neighbour_radii(generated, k)
    return PrecisionRecall(
        precision=float(_covered(generated, real, real_radii).mean()),
        recall=float(_covered(real, generated, generated_radii).mean()),
    )


def gaussian_blur(images: np.ndarray, sigma: float, side: int = 28) -> np.ndarray:
    """Images [N, side*side] (or [N, side, side]) blurred by a Gaussian of `sigma` pixels."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    batch = torch.from_numpy(np.asarray(images, dtype=np.float32)).reshape(-1, 1, side, side)
    batch = F.conv2d(
        F.pad(batch, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1)
    )
    batch = F.conv2d(
        F.pad(batch, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1)
    )
    return batch.reshape(len(batch), -1).numpy()


def _judged(scores: SampleScores, judge: SampleJudge) -> dict[str, object]:
    accuracy, frechet = scores.label_accuracy, scores.frechet
    return {
        "label_accuracy": accuracy.overall,
        "label_accuracy_worst": accuracy.worst,
        "label_accuracy_per_label": {str(k): v for k, v in accuracy.per_label.items()},
        "frechet_distance": frechet.distance,
        "frechet_floor": frechet.floor,
        "frechet_ratio": frechet.ratio,
        "classifier": judge.describe(),
    }


def usefulness_metrics(
    decode: Decode,
    *,
    latent_dim: int,
    num_classes: int,
    splits: MnistSplits,
    samples: PriorSamples,
    second: SampleJudge,
    cas_samples: int = CAS_SAMPLES,
    cas_seeds: tuple[int, ...] = CAS_SEEDS,
    cas_classifier: ClassifierConfig = CAS_CLASSIFIER,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """The second judge's scores of `samples`, precision and recall in its feature space (with
    the real-digit check), and CAS on `cas_samples` fresh balanced prior samples (0: no CAS)."""
    second_scores = second.judge(samples, num_classes)
    assert second_scores.features is not None
    real = second.real.reference
    check = {"valid": splits.valid[0]}
    check.update(
        {f"valid_blur_{sigma:g}": gaussian_blur(splits.valid[0], sigma) for sigma in BLUR_SIGMAS}
    )
    real_check = {}
    for name, images in check.items():
        found = precision_recall(real, classify(second.classifier, images).features)
        real_check[name] = {"precision": found.precision, "recall": found.recall}
    found = precision_recall(real, second_scores.features)
    _LOGGER.info(
        "precision %.4f, recall %.4f (real valid digits: %s)",
        found.precision, found.recall, real_check,
    )  # fmt: skip
    metrics: dict[str, object] = {
        "second_classifier": _judged(second_scores, second),
        "precision": found.precision,
        "recall": found.recall,
        "pr_neighbours": PR_NEIGHBOURS,
        "pr_feature_space": f"{second.classifier.config.architecture} classifier features",
        "pr_real_check": real_check,
    }
    if cas_samples > 0:
        synthetic = balanced_samples(
            decode,
            latent_dim=latent_dim,
            num_classes=num_classes,
            count=cas_samples,
            seed=seed,
            progress=progress,
        )
        real_train = (splits.train[0][:cas_samples], splits.train[1][:cas_samples])
        cas = classification_accuracy_score(
            synthetic,
            real_train,
            splits.test,
            config=cas_classifier,
            seeds=cas_seeds,
            cache_dir=cache_dir,
            progress=progress,
        )
        metrics.update(cas.as_dict())
        metrics["cas_classifier"] = dataclasses.asdict(cas_classifier)
    return metrics
