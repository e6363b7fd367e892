"""`cvae serve`: Serve the model repository over gRPC."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Serve the model repository over gRPC.",
        description="Serve the model repository over gRPC.",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("cvae serve: not built yet")
