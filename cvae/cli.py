"""The `cvae` command: one entry point, a subcommand per job.

Each subcommand lives in the package that owns it and registers itself through a
`register(subparsers)` function. Those modules import only argparse-level code at
the top, so `cvae serve --help` and `cvae generate` start fast and never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Modules that provide `register(subparsers)`, in the order shown by --help.
_SUBCOMMAND_MODULES = (
    "training.cli",  # train
    "training.evaluate.cli",  # evaluate
    "export.cli",  # export
    "service.cli",  # serve
    "cvae.jobs.cli",  # generate
    "cvae.jobs.images_cli",  # restyle, score, audit
    "cvae.playground.cli",  # playground
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvae",
        description="Train, evaluate, export and serve a conditional VAE that draws MNIST digits.",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ERROR)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    status = args.func(args)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
