"""The negative ELBO of a Bernoulli-likelihood VAE with a standard normal prior. Pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension, (N, latent), in nats; always >= 0."""
    # expm1 keeps exp(v) - 1 - v accurate near v = 0; the clamp removes rounding below zero.
    return (0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)).clamp_min(0.0)


def negative_elbo(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float = 1.0,
    free_bits: float = 0.0,
    kl_per_image: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, recon, kl), each a mean over images in nats per image.

    recon: binary cross-entropy of the [0, 1] pixels against the logits, summed over pixels.
    kl: KL(q(z|x,y) || N(0, I)) summed over latent dims. loss = recon + kl_weight * kl, where
    with `free_bits` > 0 each dimension's batch-mean KL below that many nats is not penalised
    (recon and kl are always the true terms, so recon + kl is the real negative ELBO).
    `kl_per_image` (N,), when given, is the KL term instead of the closed form against N(0, I)
    (a learned prior's estimate; free bits then do not apply).
    """
    batch = x.shape[0]
    recon = (
        F.binary_cross_entropy_with_logits(
            logits.reshape(batch, -1), x.reshape(batch, -1), reduction="sum"
        )
        / batch
    )
    if kl_per_image is not None:
        if free_bits > 0:
            raise ValueError("free bits need the closed-form KL against N(0, I)")
        kl = kl_per_image.mean()
        return recon + kl_weight * kl, recon, kl
    kl_dims = kl_per_dim(mu, logvar).mean(dim=0)  # (latent,)
    kl = kl_dims.sum()
    penalised = torch.clamp(kl_dims, min=free_bits).sum() if free_bits > 0 else kl
    return recon + kl_weight * penalised, recon, kl
