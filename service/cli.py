"""`cvae serve`: serve the model repository over gRPC (flags or CVAE_* variables)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from service import settings as settings_module


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Serve the model repository over gRPC.",
        description=(
            "Serve the newest model version of a model repository over gRPC, with dynamic "
            "batching, health, reflection, Prometheus metrics and hot reload. Every flag has a "
            "CVAE_* environment variable; the flag wins."
        ),
    )
    settings_module.add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # SIGHUP (rescan the repository) must never end the process: until the server installs
    # its handler, after the heavy imports and the settings, a rescan has nothing to do.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from service.memory import tune_malloc

    tune_malloc()  # before anything big is allocated
    from service.fds import raise_open_files_limit

    raise_open_files_limit()  # workers inherit it
    from service.errors import ModelLoadError
    from service.logs import configure_logging

    try:
        settings = settings_module.from_sources(args)
    except settings_module.SettingsError as error:
        print(f"cvae serve: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if settings.workers > 1:
        # A supervisor of worker processes; it must not import grpc before they start.
        from service.workers import SupervisorError, supervise

        try:
            return supervise(settings)
        except (ModelLoadError, SupervisorError) as error:
            print(f"cvae serve: {error}", file=sys.stderr)
            return 1
    # Heavy imports (grpc, onnxruntime, numpy) only when actually serving.
    import asyncio

    from service.reload import exit_past_abandoned_loads
    from service.server import StartupError, serve

    try:
        code = asyncio.run(serve(settings))
    except (ModelLoadError, StartupError) as error:
        print(f"cvae serve: {error}", file=sys.stderr)
        code = 1
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # closing the loop restored the default
    return exit_past_abandoned_loads(code)
