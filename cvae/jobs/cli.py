"""`cvae generate`: write a labeled synthetic dataset through the service (and merge shards)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

_FORMATS = ("npz", "png-dir", "idx")


def _labels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"labels must be integers like 0,3,7, got {text!r}"
        ) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Write a labeled synthetic dataset through the service.",
        description=(
            "Write a labeled synthetic dataset through the service (deterministic, resumable, "
            "shardable), or a quick-look grid or interpolation PNG. "
            "`cvae generate merge SHARDS... --out PATH` joins the shards of an Indexed Job."
        ),
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("CVAE_SERVER", "localhost:50051"),
        help="host:port or dns:///name:port (round-robin over replicas); env CVAE_SERVER",
    )
    parser.add_argument("--out", type=Path, help="output file (npz, png) or folder")
    parser.add_argument(
        "--per-label", type=int, help="images per label (grid: columns, default 10)"
    )
    parser.add_argument("--labels", type=_labels, help="comma-separated labels (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole dataset")
    parser.add_argument("--temperature", type=float, default=1.0, help="latent standard deviation")
    parser.add_argument("--format", choices=_FORMATS, default="npz", dest="dataset_format")
    parser.add_argument("--model-version", help="pin a model version (default: the newest)")
    parser.add_argument(
        "--model", default="", help="model name, on a server with several (default: its default)"
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=1000,
        help="images per chunk: the unit of seeding, resume and sharding (part of the dataset)",
    )
    parser.add_argument("--stream-chunk-size", type=int, default=0, help="images per message")
    parser.add_argument("--concurrency", type=int, default=2, help="chunks in flight")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline per chunk (s)")
    parser.add_argument("--shard-index", type=int, help="default: env JOB_COMPLETION_INDEX or 0")
    parser.add_argument("--shard-count", type=int, help="default: env CVAE_SHARD_COUNT or 1")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--grid", action="store_true", help="write a PNG grid, one row per label")
    parser.add_argument(
        "--interpolate",
        nargs=2,
        metavar=("FROM", "TO"),
        help="write a PNG strip between two seeds (integers) or two latents (.npy files)",
    )
    parser.add_argument("--label", type=int, default=0, help="label of the interpolation strip")
    parser.add_argument("--steps", type=int, default=10, help="images in the interpolation strip")
    parser.add_argument("--tls-ca", type=Path, help="root CA to verify the server")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client key (mutual TLS)")
    parser.set_defaults(func=_run, generate_command=None)

    actions = parser.add_subparsers(dest="generate_command", metavar="[merge]")
    merge = actions.add_parser(
        "merge",
        help="join shard folders into one dataset, identical to the unsharded run",
        description="Join the shard folders of a sharded run into one dataset.",
    )
    merge.add_argument("shards", nargs="+", type=Path, help="shard folders (--out of each shard)")
    merge.add_argument("--out", type=Path, required=True, help="the merged dataset")
    merge.add_argument("--format", choices=_FORMATS, dest="dataset_format", default=None)
    merge.set_defaults(func=_run_merge)


def _fail(message: str) -> int:
    print(f"cvae generate: error: {message}", file=sys.stderr)
    return 1


def _run_merge(args: argparse.Namespace) -> int:
    from cvae.jobs.errors import describe_failure
    from cvae.jobs.merge import merge

    try:
        merge(args.shards, args.out, args.dataset_format)
    except Exception as error:
        message = describe_failure(error, "")
        if message is None:
            raise
        return _fail(message)
    print(args.out)
    return 0


def _run(args: argparse.Namespace) -> int:
    from cvae.jobs.errors import describe_failure

    if args.out is None:
        return _fail("--out is required")
    try:
        if args.grid or args.interpolate:
            from cvae.jobs.quicklook import run_quicklook

            run_quicklook(args)
        else:
            from cvae.jobs.runner import run

            run(_job_from_args(args))
    except Exception as error:
        message = describe_failure(error, args.server)
        if message is None:
            raise
        return _fail(message)
    print(args.out)
    return 0


def _job_from_args(args: argparse.Namespace) -> Any:
    from cvae.jobs.plan import shard_from_environment
    from cvae.jobs.runner import GenerateJob

    if args.per_label is None:
        raise ValueError("--per-label is required to write a dataset")
    env_index, env_count = shard_from_environment()
    return GenerateJob(
        server=args.server,
        out=args.out,
        per_label=args.per_label,
        seed=args.seed,
        labels=args.labels,
        dataset_format=args.dataset_format,
        temperature=args.temperature,
        chunk_size=args.chunk_size,
        stream_chunk_size=args.stream_chunk_size,
        model_version=args.model_version,
        model=args.model,
        shard_index=env_index if args.shard_index is None else args.shard_index,
        shard_count=env_count if args.shard_count is None else args.shard_count,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        progress=not args.no_progress,
        tls=_tls(args),
    )


def _tls(args: argparse.Namespace) -> Any:
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    from cvae.client import TlsConfig

    return TlsConfig.from_files(args.tls_ca, args.tls_cert, args.tls_key)
