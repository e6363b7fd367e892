"""`cvae train`: train the CVAE on MNIST (torch is imported only when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.config import ConfigError, TrainConfig, add_config_flags, apply_flags, load_toml
from training.openmp import configure_openmp_waiting

_CONFIG_FLAG_PREFIX = "cfg_"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train the CVAE on MNIST.",
        description=(
            "Train the conditional VAE. Writes best.pt (best validation -ELBO), last.pt, "
            "metrics.json, loss_curve.png and samples.png (one row per label) into --out."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/default"), help="run folder")
    parser.add_argument("--config", type=Path, help="TOML file of settings; flags override it")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt, with the configuration saved there",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = sorted(name for name in vars(args) if name.startswith(_CONFIG_FLAG_PREFIX))
    if args.resume and (overrides or args.config):
        raise SystemExit("cvae train: --resume uses the saved configuration; drop the other flags")
    try:
        config = load_toml(args.config) if args.config else TrainConfig()
        config = apply_flags(config, args)
    except ConfigError as error:
        raise SystemExit(f"cvae train: {error}") from error

    configure_openmp_waiting()  # before torch loads
    from training.trainer import LAST_CHECKPOINT, Trainer  # torch loads here

    if args.resume:
        if not (args.out / LAST_CHECKPOINT).is_file():
            raise SystemExit(f"cvae train: nothing to resume, {args.out / LAST_CHECKPOINT} missing")
        trainer = Trainer.resume(args.out, progress=not args.no_progress)
    else:
        trainer = Trainer(config, args.out, progress=not args.no_progress)
    metrics = trainer.run()
    print(
        f"best valid -ELBO {metrics['best_valid_neg_elbo']:.2f} nats at epoch "
        f"{metrics['best_epoch']}, {metrics['train_seconds']:.0f} s; wrote {args.out}"
    )
    return 0
