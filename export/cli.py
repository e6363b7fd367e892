"""`cvae export`: Export a trained decoder to an ONNX model repository."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="Export a trained decoder to an ONNX model repository.",
        description="Export a trained decoder to an ONNX model repository.",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("cvae export: not built yet")
