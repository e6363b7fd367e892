"""Likelihood scores of a CVAE on held-out images: the negative ELBO, an importance-weighted bound.

Both are in nats per image, with a Bernoulli likelihood on the [0, 1] pixels (BCE summed over
the pixels). The importance-weighted bound (Burda et al., 2016) with k samples,
log p(x|y) ≥ E[log (1/k) Σ_i p(x|z_i,y) p(z_i) / q(z_i|x,y)], tightens towards the true
log-likelihood as k grows; it is reported as a negative log-likelihood bound (lower is better).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.model import CVAE
from training.prior import log_diagonal_normal

_LOGGER = logging.getLogger(__name__)


def _images(model: CVAE, images: np.ndarray) -> torch.Tensor:
    height, width = model.config.image_shape
    return torch.from_numpy(np.asarray(images, dtype=np.float32)).reshape(-1, 1, height, width)


def _log_bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z,y) per image: minus the BCE summed over pixels. (B, H, W), (B or 1, ...) -> (B,)"""
    target = x.reshape(x.shape[0], *logits.shape[1:]).expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return -bce.flatten(1).sum(dim=1)


@torch.no_grad()
def negative_elbo(
    model: CVAE,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    batch_size: int = 1000,
    progress: bool = True,
) -> dict[str, float]:
    """Mean −ELBO, reconstruction (BCE) and KL in nats per image; one z sample per image. Also
    `reconstruction_at_mean`: the BCE of the image decoded from the posterior mean (what the
    service's Reconstruct returns), no sample drawn."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = _images(model, images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    totals = {"negative_elbo": 0.0, "reconstruction": 0.0, "kl": 0.0, "reconstruction_at_mean": 0.0}
    for start in tqdm(
        range(0, len(x_all), batch_size), desc="test -ELBO", unit="batch", disable=not progress
    ):
        x, y = x_all[start : start + batch_size], y_all[start : start + batch_size]
        mu, logvar = model.encoder(x, y)  # (B, latent) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        reconstruction = -_log_bernoulli(model.decoder.logits(z, y), x)  # (B,)
        # closed form against N(0, I); a learned prior's single-sample estimate at z
        kl = model.kl(z, mu, logvar, y)  # (B,)
        totals["reconstruction"] += float(reconstruction.sum())
        at_mean = -_log_bernoulli(model.decoder.logits(mu, y), x)
        totals["reconstruction_at_mean"] += float(at_mean.sum())
        totals["kl"] += float(kl.sum())
        totals["negative_elbo"] += float((reconstruction + kl).sum())
    return {name: total / len(x_all) for name, total in totals.items()}


@torch.no_grad()
def importance_weighted_nll(
    model: CVAE,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    samples: int = 1000,
    seed: int = 0,
    decode_batch: int = 2000,
    progress: bool = True,
) -> float:
    """Mean −log p̂(x|y) in nats per image from the k-sample importance-weighted bound.

    Each image's k log-weights log p(x|z,y) + log p(z) − log q(z|x,y) are computed in chunks of
    at most `decode_batch` decodes and combined with a log-mean-exp.
    """
    if samples < 1:
        raise ValueError("samples must be at least 1")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = _images(model, images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    chunk = max(1, min(samples, decode_batch))
    bounds = torch.empty(len(x_all), dtype=torch.float64)
    for index in tqdm(
        range(len(x_all)), desc=f"IW bound k={samples}", unit="image", disable=not progress
    ):
        x, y = x_all[index : index + 1], y_all[index : index + 1]
        mu, logvar = model.encoder(x, y)  # (1, latent)
        log_weights = []
        for start in range(0, samples, chunk):
            count = min(chunk, samples - start)
            eps = torch.randn((count, mu.shape[1]), generator=generator)
            z = mu + torch.exp(0.5 * logvar) * eps  # (count, latent)
            logits = model.decoder.logits(z, y.expand(count))  # (count, H, W)
            log_weights.append(
                _log_bernoulli(logits, x)
                + model.prior_log_prob(z, y.expand(count))
                - log_diagonal_normal(z, mu, logvar)
            )
        weights = torch.cat(log_weights).double()
        bounds[index] = torch.logsumexp(weights, dim=0) - math.log(samples)
    return float(-bounds.mean())
