"""`python -m bench` (`make bench`): measure, then write docs/benchmarks.md, .json and the plots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short durations, fewer images"
    )
    parser.add_argument("--model-repository", type=Path, default=_ROOT / "models")
    parser.add_argument("--model-name", default="", help="model folder (default: the only one)")
    parser.add_argument("--results", type=Path, default=_ROOT / "bench" / "results")
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="where benchmarks.md/.json and images/ go (default: docs/ for a full run, "
        "bench/results/quick/docs for --quick)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=_ROOT / "runs" / "default" / "best.pt",
        help="training checkpoint for the PyTorch eager reference (skipped when absent)",
    )
    parser.add_argument("--no-triton", action="store_true", help="skip NVIDIA Triton")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="measure nothing: rewrite the page and plots from a results file of an earlier run",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from bench.h2load import H2loadError
    from bench.run import BenchOptions, render, run
    from modelrepo import ModelRepositoryError

    if args.render is not None:
        render(json.loads(args.render.read_text()), args.docs or _ROOT / "docs")
        return 0

    options = BenchOptions(
        quick=args.quick,
        model_repository=args.model_repository,
        model_name=args.model_name,
        results=args.results,
        docs=args.docs if args.docs is not None else (None if args.quick else _ROOT / "docs"),
        triton=not args.no_triton,
        profile=not args.no_profile,
        checkpoint=args.checkpoint,
    )
    try:
        results = run(options)
    except (H2loadError, ModelRepositoryError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    for target in results["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["pass"]]
        print(f"{verdict:>12}  {target['target']}: {target['shown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
