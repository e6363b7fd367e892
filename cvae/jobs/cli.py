"""`cvae generate`: Write a labeled synthetic dataset through the service."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Write a labeled synthetic dataset through the service.",
        description="Write a labeled synthetic dataset through the service.",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("cvae generate: not built yet")
