"""`cvae restyle`, `cvae score` and `cvae audit`: commands that send real images to the service."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cvae.jobs.cli import _labels

_FORMATS = ("npz", "png-dir", "idx")


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("CVAE_SERVER", "localhost:50051"),
        help="host:port or dns:///name:port; env CVAE_SERVER",
    )
    parser.add_argument("--model-version", help="pin a model version (default: the newest)")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline per call (s)")
    parser.add_argument("--tls-ca", type=Path, help="root CA to verify the server")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client key (mutual TLS)")


def register(subparsers: Any) -> None:
    restyle = subparsers.add_parser(
        "restyle",
        help="Draw real images in other labels (same handwriting) through the service.",
        description=(
            "Encode each image with its label and decode it under every target label. INPUT is "
            "one PNG (with --label) or a dataset (npz, png-dir, idx). --out FILE.png writes a "
            "grid (one row per image: the image, then each target); any other --out writes a "
            "dataset of len(INPUT) x len(targets) images, image-major."
        ),
    )
    restyle.add_argument("input", type=Path, help="a PNG or a dataset")
    restyle.add_argument("--out", type=Path, required=True, help="grid .png, .npz or folder")
    restyle.add_argument("--label", type=int, help="the true label of a single PNG")
    restyle.add_argument("--targets", type=_labels, help="comma-separated (default: all)")
    restyle.add_argument("--format", choices=_FORMATS, dest="dataset_format")
    restyle.add_argument("--limit", type=int, help="only the first N images")
    restyle.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _connection(restyle)
    restyle.set_defaults(func=_run_restyle)

    score = subparsers.add_parser(
        "score",
        help="Score real images under every label (ELBO or importance-weighted bound).",
        description=(
            "Write CSV (index,label,predicted_label,probability,log_likelihood_0..) for each "
            "image of INPUT (a PNG, or a dataset); with labels, print the accuracy of the "
            "predicted labels on stderr."
        ),
    )
    score.add_argument("input", type=Path, help="a PNG or a dataset")
    score.add_argument("--out", type=Path, help="CSV file (default: stdout)")
    score.add_argument("--label", type=int, help="the true label of a single PNG")
    score.add_argument("--samples", type=int, default=1, help="importance samples (1: ELBO)")
    score.add_argument("--seed", type=int, default=0, help="seed of the z samples")
    score.add_argument("--limit", type=int, help="only the first N images")
    score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _connection(score)
    score.set_defaults(func=_run_score)

    audit = subparsers.add_parser(
        "audit",
        help="Rank a labeled dataset's images by how suspicious their labels are.",
        description=(
            "Score every image under every label; write DIR/ranking.csv "
            "(index,label,predicted_label,score; most suspicious first; score = best other "
            "label's log-likelihood bound minus the given label's, nats), DIR/suspicious.png and "
            "DIR/audit.json. Resumable: rerun the same command after an interruption."
        ),
    )
    audit.add_argument("dataset", type=Path, help="npz, png-dir or idx dataset")
    audit.add_argument("--out", type=Path, required=True, help="output folder")
    audit.add_argument("--samples", type=int, default=1, help="importance samples (1: ELBO)")
    audit.add_argument("--seed", type=int, default=0, help="seed of the z samples")
    audit.add_argument("--chunk-size", type=int, default=1000, help="images per saved chunk")
    audit.add_argument("--concurrency", type=int, default=2, help="chunks in flight")
    audit.add_argument("--top", type=int, default=64, help="images on the contact sheet")
    audit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _connection(audit)
    audit.set_defaults(func=_run_audit)


def _tls(args: argparse.Namespace) -> Any:
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    from cvae.client import TlsConfig

    return TlsConfig.from_files(args.tls_ca, args.tls_cert, args.tls_key)


def _guarded(command: str, args: argparse.Namespace, body: Any) -> int:
    from cvae.jobs.errors import describe_failure

    try:
        message = body()
    except Exception as error:
        described = describe_failure(error, args.server)
        if described is None:
            raise
        print(f"cvae {command}: error: {described}", file=sys.stderr)
        return 1
    if message:
        print(message)
    return 0


def _inputs(args: argparse.Namespace) -> tuple[Any, Any]:
    from cvae.jobs.image_input import read_images

    images, labels = read_images(args.input, args.label)
    if args.limit is not None:
        images = images[: args.limit]
        labels = None if labels is None else labels[: args.limit]
    return images, labels


def _run_restyle(args: argparse.Namespace) -> int:
    def body() -> str:
        from cvae.client import Client
        from cvae.jobs.restyle import run_restyle

        images, labels = _inputs(args)
        if labels is None:
            raise ValueError(f"{args.input}: restyle needs the true label (--label for a PNG)")
        with Client(args.server, timeout_s=args.timeout, tls=_tls(args)) as client:
            targets = args.targets
            if targets is None:
                targets = tuple(range(client.model_info(args.model_version).num_classes))
            return run_restyle(
                client, images, labels, targets, args.out, args.dataset_format,
                args.model_version, not args.no_progress,
            )  # fmt: skip

    return _guarded("restyle", args, body)


def _run_score(args: argparse.Namespace) -> int:
    def body() -> str:
        from cvae.client import Client
        from cvae.jobs.score import score_chunks, write_scores

        images, labels = _inputs(args)
        with Client(args.server, timeout_s=args.timeout, tls=_tls(args)) as client:
            info = client.model_info(args.model_version)
            parts = score_chunks(
                client, images, labels, samples=args.samples, seed=args.seed,
                per_request=info.max_images_per_request, model_version=info.version,
                num_classes=info.num_classes,
                progress=not args.no_progress and args.out is not None,
            )  # fmt: skip
            if args.out is None:
                count, correct = write_scores(sys.stdout, parts, labels)
            else:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "w", newline="") as stream:
                    count, correct = write_scores(stream, parts, labels)
        if labels is not None:
            print(f"accuracy {correct / max(count, 1):.4f} ({correct}/{count})", file=sys.stderr)
        return "" if args.out is None else str(args.out)

    return _guarded("score", args, body)


def _run_audit(args: argparse.Namespace) -> int:
    def body() -> str:
        from cvae.jobs.audit import AuditJob, run_audit

        job = AuditJob(
            server=args.server, dataset=args.dataset, out=args.out, samples=args.samples,
            seed=args.seed, chunk_size=args.chunk_size, concurrency=args.concurrency,
            top=args.top, model_version=args.model_version, timeout_s=args.timeout,
            progress=not args.no_progress, tls=_tls(args),
        )  # fmt: skip
        return str(run_audit(job))

    return _guarded("audit", args, body)
