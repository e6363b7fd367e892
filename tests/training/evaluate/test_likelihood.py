"""The test −ELBO and the importance-weighted bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import MnistSplits
from training.evaluate.likelihood import importance_weighted_nll, negative_elbo
from training.loss import kl_per_dim
from training.model import CVAE


def test_negative_elbo_is_reconstruction_plus_kl(small_cvae: CVAE, mnist: MnistSplits) -> None:
    images, labels = mnist.test[0][:300], mnist.test[1][:300]
    scores = negative_elbo(small_cvae, images, labels, batch_size=128, progress=False)
    assert scores["negative_elbo"] == pytest.approx(scores["reconstruction"] + scores["kl"])
    with torch.no_grad():
        mu, logvar = small_cvae.encoder(
            torch.from_numpy(images).reshape(-1, 1, 28, 28), torch.from_numpy(labels)
        )
    expected_kl = float(kl_per_dim(mu, logvar).sum(dim=1).mean())
    assert scores["kl"] == pytest.approx(expected_kl, rel=1e-5)
    # an untrained decoder outputs about 0.5 everywhere: about 784·log 2 = 543 nats of BCE
    assert 400 < scores["reconstruction"] < 700


def test_the_reconstruction_from_the_posterior_mean_is_the_decoded_mean(
    small_cvae: CVAE, mnist: MnistSplits
) -> None:
    """What the service's Reconstruct returns, scored: the BCE of decoder(mu) against x."""
    images, labels = mnist.test[0][:200], mnist.test[1][:200]
    scores = negative_elbo(small_cvae, images, labels, batch_size=64, progress=False)
    x = torch.from_numpy(images).reshape(-1, 1, 28, 28)
    with torch.no_grad():
        mu, _ = small_cvae.encoder(x, torch.from_numpy(labels))
        means = small_cvae.decoder(mu, torch.from_numpy(labels)).double().clamp(1e-12, 1 - 1e-12)
    target = x.reshape(len(x), -1).double()
    p = means.reshape(len(x), -1)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).sum(dim=1).mean()
    assert scores["reconstruction_at_mean"] == pytest.approx(float(bce), rel=1e-4)
    assert scores["reconstruction_at_mean"] != scores["reconstruction"]


def test_negative_elbo_is_seeded(small_cvae: CVAE, mnist: MnistSplits) -> None:
    images, labels = mnist.test[0][:100], mnist.test[1][:100]
    first = negative_elbo(small_cvae, images, labels, seed=3, progress=False)
    assert negative_elbo(small_cvae, images, labels, seed=3, progress=False) == first


def test_one_sample_bound_estimates_the_elbo(small_cvae: CVAE, mnist: MnistSplits) -> None:
    images, labels = mnist.test[0][:200], mnist.test[1][:200]
    elbo = negative_elbo(small_cvae, images, labels, progress=False)["negative_elbo"]
    one_sample = importance_weighted_nll(small_cvae, images, labels, samples=1, progress=False)
    assert one_sample == pytest.approx(elbo, rel=0.01)


def test_more_samples_tighten_the_bound(small_cvae: CVAE, mnist: MnistSplits) -> None:
    images, labels = mnist.test[0][:30], mnist.test[1][:30]
    loose = importance_weighted_nll(small_cvae, images, labels, samples=1, progress=False)
    tight = importance_weighted_nll(
        small_cvae, images, labels, samples=200, decode_batch=64, progress=False
    )
    assert tight < loose
    assert np.isfinite(tight)


def test_bound_refuses_zero_samples(small_cvae: CVAE, mnist: MnistSplits) -> None:
    with pytest.raises(ValueError):
        importance_weighted_nll(small_cvae, mnist.test[0][:2], mnist.test[1][:2], samples=0)


def test_a_flow_prior_model_is_bounded_against_its_own_prior(mnist: MnistSplits) -> None:
    import dataclasses

    from tests.training.evaluate.conftest import SMALL_MODEL

    torch.manual_seed(1)
    model = CVAE(dataclasses.replace(SMALL_MODEL, prior="flow", prior_layers=2)).eval()
    with torch.no_grad():
        for parameter in model.prior.parameters():  # type: ignore[union-attr]
            parameter.normal_(std=0.3)
    images, labels = mnist.test[0][:200], mnist.test[1][:200]
    # One image per batch: the ELBO draws the same z per image as the one-sample bound does, so
    # the two single-sample estimates (a flow prior's KL has no closed form) are the same number
    # when, and only when, both score z against the model's own prior.
    elbo = negative_elbo(model, images, labels, batch_size=1, progress=False)
    assert elbo["negative_elbo"] == pytest.approx(elbo["reconstruction"] + elbo["kl"])
    one_sample = importance_weighted_nll(model, images, labels, samples=1, progress=False)
    assert one_sample == pytest.approx(elbo["negative_elbo"], rel=1e-5)
    many = importance_weighted_nll(model, images, labels, samples=64, progress=False)
    assert many < one_sample  # more samples: a tighter bound
