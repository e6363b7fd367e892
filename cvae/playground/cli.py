"""`cvae playground --server HOST:PORT`: serve the page that tries the service."""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "playground",
        help="Serve a small web page to try the service (draw a digit, restyle, sample).",
        description=(
            "Serve a page on http://HOST:PORT/ that sends a drawn or uploaded digit to the "
            "service: its label probabilities, the digit restyled as every label, and fresh "
            "samples with a seed and temperature. It talks to the service with the Python client."
        ),
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("CVAE_SERVER", "localhost:50051"),
        help="the generation service, host:port; env CVAE_SERVER",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on")
    parser.add_argument("--port", type=int, default=8080, help="port of the page")
    parser.add_argument(
        "--model", default="", help="model name, on a server with several (default: its default)"
    )
    parser.add_argument("--model-version", help="pin a model version (default: the newest)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from cvae.client import Client
    from cvae.playground.app import create_app

    with Client(args.server, timeout_s=30, model=args.model) as client:
        server = make_server(args.host, args.port, create_app(client, args.model_version),
                             threaded=True)  # fmt: skip
        model = f", model {args.model}" if args.model else ""
        print(f"playground on http://{args.host}:{server.port}/ (service {args.server}{model})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0
