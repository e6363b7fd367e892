"""`cvae generate --grid` and `--interpolate`: small PNGs to see what the model draws."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from cvae.client import Client, TlsConfig
from cvae.jobs.preview import grid, interpolate, latent_for_seed, save_png
from cvae.jobs.runner import validate_labels

_LOGGER = logging.getLogger(__name__)


def _endpoint(
    client: Client, text: str, label: int, temperature: float, version: str | None
) -> np.ndarray:
    """A seed (an integer) or a saved latent (.npy, float32 [latent_dim])."""
    if text.lstrip("-").isdigit():
        return latent_for_seed(client, label, int(text), temperature, version)
    return np.asarray(np.load(Path(text)), dtype=np.float32).reshape(-1)


def run_quicklook(args: argparse.Namespace) -> None:
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = TlsConfig.from_files(args.tls_ca, args.tls_cert, args.tls_key)
    with Client(args.server, timeout_s=args.timeout, tls=tls) as client:
        info = client.model_info(args.model_version)
        if args.grid:
            labels = validate_labels(args.labels, info)
            picture = grid(
                client,
                labels,
                args.per_label or 10,
                args.seed,
                args.temperature,
                info.version,
            )
        else:
            (label,) = validate_labels([args.label], info)
            start = _endpoint(client, args.interpolate[0], label, args.temperature, info.version)
            end = _endpoint(client, args.interpolate[1], label, args.temperature, info.version)
            if start.shape != (info.latent_dim,) or end.shape != (info.latent_dim,):
                raise ValueError(f"latents must have {info.latent_dim} values")
            picture = interpolate(client, label, start, end, args.steps, info.version)
    save_png(picture, args.out)
    _LOGGER.info("wrote %s (model %s version %s)", args.out, info.name, info.version)
