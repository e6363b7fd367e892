"""Train the evaluator's classifier once, then reuse it from a cache keyed by recipe and data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.data import Split
from training.data import cache_dir as data_cache_dir
from training.evaluate.classifier import ClassifierConfig, DigitClassifier, as_image_batch, classify

_LOGGER = logging.getLogger(__name__)

_CACHE_FORMAT = "cvae-classifier/1"
_POSTFIX_EVERY = 20  # batches between updates of the running loss on the progress bar


class ClassifierCacheError(RuntimeError):
    """A cached classifier that cannot be used (and is retrained instead)."""


@dataclass(frozen=True)
class TrainedClassifier:
    model: DigitClassifier
    test_accuracy: float
    cache_key: str
    train_seconds: float | None  # wall time of the run that trained it (None: not recorded)


def data_fingerprint(*splits: Split) -> str:
    """sha256 over the bytes, shapes and dtypes of the given (images, labels) splits."""
    digest = hashlib.sha256()
    for images, labels in splits:
        for array in (np.ascontiguousarray(images), np.ascontiguousarray(labels)):
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(config: ClassifierConfig, train: Split, test: Split) -> str:
    recipe = json.dumps(dataclasses.asdict(config), sort_keys=True)
    torch_version = torch.__version__.split("+")[0]
    material = f"{_CACHE_FORMAT}|{recipe}|torch {torch_version}|{data_fingerprint(train, test)}"
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def train_classifier(
    config: ClassifierConfig, train: Split, *, progress: bool = True
) -> DigitClassifier:
    """Train on `train` with AdamW and a one-cycle schedule; seeded, so reproducible."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = DigitClassifier(config)
    images = as_image_batch(train[0], config.image_side)
    labels = torch.from_numpy(np.asarray(train[1], dtype=np.int64))
    steps_per_epoch = -(-len(images) // config.batch_size)
    weight_decay = 0.0 if config.optimizer == "adam" else config.weight_decay
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    model.train()
    bar = tqdm(
        total=config.epochs * steps_per_epoch, desc="classifier", unit="batch", disable=not progress
    )
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), config.batch_size):
            index = order[start : start + config.batch_size]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            if bar.n % _POSTFIX_EVERY == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    bar.close()
    return model.eval()


def accuracy(model: DigitClassifier, split: Split) -> float:
    predictions = classify(model, split[0]).predictions
    return float(np.mean(predictions == np.asarray(split[1])))


def load_or_train_classifier(
    train: Split,
    test: Split,
    *,
    config: ClassifierConfig | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> TrainedClassifier:
    """The classifier for this recipe and data: from the cache, or trained now and cached."""
    config = config or ClassifierConfig()
    key = cache_key(config, train, test)
    path = (cache_dir or data_cache_dir()) / f"classifier-{key}.pt"
    if path.is_file():
        try:
            model, test_accuracy, train_seconds = _read(path, config)
            _LOGGER.info("classifier from cache %s (test accuracy %.4f)", path, test_accuracy)
            return TrainedClassifier(model, test_accuracy, key, train_seconds)
        except ClassifierCacheError as error:
            _LOGGER.warning("retraining the classifier: %s", error)
    _LOGGER.info("training the evaluator's classifier (cached as %s)", path)
    started = time.monotonic()
    model = train_classifier(config, train, progress=progress)
    train_seconds = time.monotonic() - started
    test_accuracy = accuracy(model, test)
    _LOGGER.info("classifier test accuracy %.4f, trained in %.0f s", test_accuracy, train_seconds)
    _write(path, model, test_accuracy, key, train_seconds)
    return TrainedClassifier(model, test_accuracy, key, train_seconds)


def _read(path: Path, config: ClassifierConfig) -> tuple[DigitClassifier, float, float | None]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != _CACHE_FORMAT or payload.get("config") != dataclasses.asdict(
            config
        ):
            raise ClassifierCacheError(f"{path} was made by another recipe")
        model = DigitClassifier(config)
        model.load_state_dict(payload["state_dict"])
        seconds = payload.get("train_seconds")  # absent from caches written before it was kept
        return model.eval(), float(payload["test_accuracy"]), seconds
    except ClassifierCacheError:
        raise
    except Exception as error:  # a truncated or foreign file: any unpickling error
        raise ClassifierCacheError(f"unreadable cache file {path}: {error}") from error


def _write(
    path: Path, model: DigitClassifier, test_accuracy: float, key: str, train_seconds: float
) -> None:
    payload = {
        "format": _CACHE_FORMAT,
        "key": key,
        "config": dataclasses.asdict(model.config),
        "test_accuracy": test_accuracy,
        "train_seconds": train_seconds,
        "state_dict": model.state_dict(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            torch.save(payload, handle)
        os.replace(handle.name, path)
    except OSError as error:
        _LOGGER.warning("could not cache the classifier in %s: %s", path, error)
