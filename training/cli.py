"""`cvae train`: train the CVAE on MNIST (torch is imported only when the command runs).

The same command runs under torchrun (`torchrun --nproc-per-node N -m cvae train ...`, or
`cvae train --nproc-per-node N ...`, which starts that launcher): see training/distributed.py.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from training.config import (
    FLAG_DEST_PREFIX,
    ConfigError,
    TrainConfig,
    add_config_flags,
    apply_flags,
    load_toml,
)
from training.openmp import configure_openmp_waiting

_DEVICES = ("auto", "cpu", "cuda")  # training.distributed.DEVICE_CHOICES, without torch
_DEFAULT_TIMEOUT_S = 300.0  # training.distributed.DEFAULT_TIMEOUT_S


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train the CVAE on MNIST.",
        description=(
            "Train the conditional VAE. Writes best.pt (best validation -ELBO), last.pt, "
            "metrics.json, loss_curve.png and samples.png (one row per label) into --out. "
            "Runs unchanged under torchrun: --batch-size is then the global batch, shared "
            "by the processes, and rank 0 alone writes."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/default"), help="run folder")
    parser.add_argument("--config", type=Path, help="TOML file of settings; flags override it")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt, with the configuration saved there",
    )
    resume.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue from --out's last.pt when there is one (its configuration must be the "
        "one given), else start; for jobs that may be restarted",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--device",
        choices=_DEVICES,
        default="auto",
        help="cuda (one GPU per process, NCCL between them), cpu (gloo), or auto: cuda when "
        "torch sees a GPU (default: auto)",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=_DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others before the run fails "
        f"(default: {_DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="start N training processes on this machine through torchrun "
        "(torch.distributed.run --standalone) with the other arguments",
    )
    add_config_flags(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = sorted(name for name in vars(args) if name.startswith(FLAG_DEST_PREFIX))
    if args.resume and (overrides or args.config):
        raise SystemExit("cvae train: --resume uses the saved configuration; drop the other flags")
    try:
        config = load_toml(args.config) if args.config else TrainConfig()
        config = apply_flags(config, args)
    except ConfigError as error:
        raise SystemExit(f"cvae train: {error}") from error

    configure_openmp_waiting()  # before torch loads (and inherited by torchrun's workers)
    if args.nproc_per_node is not None:
        return _launch(args)
    rank, world_size = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    if rank != "0":
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 alone logs
    from training import distributed  # torch loads here
    from training.trainer import LAST_CHECKPOINT

    last = args.out / LAST_CHECKPOINT
    if args.resume and not last.is_file():
        raise SystemExit(f"cvae train: nothing to resume, {last} missing")
    try:
        metrics = _train(args, config, last)
    except distributed.DistributedError as error:
        raise SystemExit(f"cvae train: {error}") from error
    except distributed.CommunicationError as error:  # a peer died, or never came, or timed out
        raise SystemExit(f"cvae train: rank {rank} of {world_size}: {error}") from error
    if metrics:  # rank 0
        print(
            f"best valid -ELBO {metrics['best_valid_neg_elbo']:.2f} nats at epoch "
            f"{metrics['best_epoch']}, {metrics['train_seconds']:.0f} s; wrote {args.out}"
        )
    return 0


def _train(args: argparse.Namespace, config: TrainConfig, last: Path) -> dict[str, Any]:
    from training import distributed
    from training.trainer import Trainer

    runtime = distributed.start(args.device, args.dist_timeout)
    try:
        if args.resume or (args.auto_resume and last.is_file()):
            trainer = Trainer.resume(args.out, progress=not args.no_progress, runtime=runtime)
            if args.auto_resume and trainer.config != config:
                raise SystemExit(
                    f"cvae train: {last} was trained with another configuration; "
                    "use a new --out, or --resume to continue it as saved"
                )
        else:
            trainer = Trainer(config, args.out, progress=not args.no_progress, runtime=runtime)
        return trainer.run()
    finally:
        distributed.stop(runtime)


def _launch(args: argparse.Namespace) -> int:
    """Replace this process by torchrun, which starts --nproc-per-node copies of `cvae train`."""
    from training import distributed

    command = distributed.launcher_command(args.nproc_per_node, train_arguments(args))
    logging.getLogger(__name__).info("starting %s", " ".join(command))
    logging.shutdown()
    os.execv(command[0], command)
    return 1  # not reached


def train_arguments(args: argparse.Namespace) -> list[str]:
    """The `cvae` arguments each worker gets: these, without --nproc-per-node."""
    out = ["--log-level", args.log_level, "train", "--out", str(args.out), "--device", args.device]
    out += ["--dist-timeout", repr(args.dist_timeout)]
    if args.config:
        out += ["--config", str(args.config)]
    for flag in ("resume", "auto_resume", "no_progress"):
        if getattr(args, flag):
            out.append("--" + flag.replace("_", "-"))
    for name in sorted(vars(args)):
        if name.startswith(FLAG_DEST_PREFIX):
            value = getattr(args, name)
            text = ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
            out += ["--" + name.removeprefix(FLAG_DEST_PREFIX).replace("_", "-"), text]
    return out
