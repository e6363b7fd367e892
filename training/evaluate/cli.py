"""`cvae evaluate`: score a trained CVAE."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("evaluate", help="Score a trained CVAE.")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("cvae evaluate: not built yet")
