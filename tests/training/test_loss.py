"""training/loss.py: the negative ELBO is finite, its KL is never negative, and it adds up."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.loss import kl_per_dim, negative_elbo


def test_negative_elbo_is_recon_plus_kl_in_nats_per_image() -> None:
    torch.manual_seed(0)
    logits, x = torch.randn(4, 28, 28), torch.rand(4, 1, 28, 28)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    loss, recon, kl = negative_elbo(logits, x, mu, logvar)
    p = torch.sigmoid(logits).reshape(4, -1)
    target = x.reshape(4, -1)
    expected_recon = -(target * p.log() + (1 - target) * (1 - p).log()).sum(1).mean()
    expected_kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
    torch.testing.assert_close(recon, expected_recon, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl, expected_kl)
    torch.testing.assert_close(loss, recon + kl)
    assert torch.isfinite(loss)


def test_kl_weight_scales_only_the_kl_term() -> None:
    logits, x = torch.zeros(2, 28, 28), torch.full((2, 1, 28, 28), 0.5)
    mu, logvar = torch.ones(2, 3), torch.zeros(2, 3)
    loss, recon, kl = negative_elbo(logits, x, mu, logvar, kl_weight=0.25)
    assert math.isclose(float(recon), 784 * math.log(2), rel_tol=1e-5)
    assert math.isclose(float(kl), 1.5, rel_tol=1e-6)
    assert math.isclose(float(loss), float(recon) + 0.25 * 1.5, rel_tol=1e-6)


def test_free_bits_floor_the_penalised_kl_but_not_the_reported_one() -> None:
    logits, x = torch.zeros(1, 28, 28), torch.zeros(1, 1, 28, 28)
    mu, logvar = torch.zeros(1, 4), torch.zeros(1, 4)
    loss, recon, kl = negative_elbo(logits, x, mu, logvar, free_bits=0.5)
    assert float(kl) == 0.0
    assert math.isclose(float(loss - recon), 4 * 0.5, rel_tol=1e-6)


def test_kl_is_zero_at_the_prior() -> None:
    assert float(kl_per_dim(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max()) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    mu=st.floats(-20, 20, allow_nan=False),
    logvar=st.floats(-15, 15, allow_nan=False),
)
def test_kl_is_never_negative(mu: float, logvar: float) -> None:
    value = kl_per_dim(torch.tensor([[mu]]), torch.tensor([[logvar]]))
    assert torch.isfinite(value).all() and float(value) >= 0.0
