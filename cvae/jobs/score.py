"""`cvae score`: each image's bound on log p(x|y) under every label, as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

import numpy as np
from tqdm import tqdm

from cvae.client import Client, ScoreResult


def score_chunks(
    client: Client,
    images: np.ndarray,
    labels: np.ndarray | None,
    *,
    samples: int,
    seed: int,
    per_request: int,
    model_version: str,
    num_classes: int = 1,
    progress: bool = False,
) -> Iterator[tuple[int, ScoreResult]]:
    """(offset, result) per request; request r is seeded with seed + r (same inputs, same
    numbers). A request's images are sized so that its decoder rows (images x samples x
    `num_classes`) are at most `per_request`: two such requests in flight fit the server's queue
    beside each other, where two of `per_request` images each would find it full."""
    step = max(1, per_request // (max(samples, 1) * max(num_classes, 1)))
    with tqdm(total=len(images), unit="img", disable=not progress) as bar:
        for number, start in enumerate(range(0, len(images), step)):
            stop = min(start + step, len(images))
            result = client.score(
                images[start:stop],
                None if labels is None else labels[start:stop],
                samples=samples,
                seed=seed + number,
                model_version=model_version,
            )
            bar.update(stop - start)
            yield start, result


def write_scores(
    stream: TextIO, parts: Iterator[tuple[int, ScoreResult]], labels: np.ndarray | None
) -> tuple[int, int]:
    """CSV rows index,label,predicted_label,probability,log_likelihood_0..K-1; returns
    (images, correctly predicted) (correct counts only with labels)."""
    rows = csv.writer(stream, lineterminator="\n")
    header_written = False
    count = correct = 0
    for offset, result in parts:
        classes = result.log_likelihood.shape[1]
        if not header_written:
            names = [f"log_likelihood_{label}" for label in range(classes)]
            rows.writerow(["index", "label", "predicted_label", "probability", *names])
            header_written = True
        for row, predicted in enumerate(result.predicted_labels):
            index = offset + row
            given = "" if labels is None else int(labels[index])
            rows.writerow(
                [
                    index,
                    given,
                    int(predicted),
                    f"{result.label_probabilities[row, predicted]:.6g}",
                    *(f"{value:.4f}" for value in result.log_likelihood[row]),
                ]
            )
            count += 1
            correct += int(labels is not None and labels[index] == predicted)
    return count, correct
