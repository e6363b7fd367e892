"""`cvae export`: Export a trained decoder to an ONNX model repository."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.config import positive_int
from training.openmp import configure_openmp_waiting


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="Export a trained decoder to an ONNX model repository.",
        description=(
            "Export the decoder of a training checkpoint to ONNX and publish it as "
            "<repository>/<name>/<version>/ with model.onnx, its encoder as encoder.onnx and "
            "model.json "
            "(see docs/model-repository.md). An existing version is never overwritten."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by `cvae train`")
    parser.add_argument(
        "--repository", type=Path, default=Path("models"), help="model repository root (models)"
    )
    parser.add_argument("--name", default="cvae-mnist", help="model name (cvae-mnist)")
    parser.add_argument(
        "--version",
        type=positive_int,
        default=None,
        help="version number (default: the highest existing version + 1)",
    )
    parser.add_argument(
        "--metrics", type=Path, default=None, help="metrics.json written by `cvae evaluate`"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (18)")
    parser.add_argument(
        "--no-encoder",
        action="store_true",
        help="publish the decoder alone (default: the encoder too, as encoder.onnx)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    configure_openmp_waiting()  # before torch loads
    from export.exporter import MetricsError, export_checkpoint
    from export.onnx_decoder import OnnxExportError
    from modelrepo import ModelRepositoryError
    from training.checkpoint import CheckpointError

    try:
        folder = export_checkpoint(
            args.checkpoint,
            args.repository,
            name=args.name,
            version=args.version,
            metrics_path=args.metrics,
            opset=args.opset,
            with_encoder=not args.no_encoder,
        )
    except (CheckpointError, MetricsError, OnnxExportError, ModelRepositoryError) as error:
        raise SystemExit(f"cvae export: {error}") from error
    print(folder)
    return 0
