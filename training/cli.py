"""`cvae train` and `cvae evaluate`."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="Train the CVAE on MNIST.")
    train.set_defaults(func=_not_built)
    evaluate = subparsers.add_parser("evaluate", help="Score a trained CVAE.")
    evaluate.set_defaults(func=_not_built)


def _not_built(args: argparse.Namespace) -> int:
    raise SystemExit(f"cvae {args.command}: not built yet")
