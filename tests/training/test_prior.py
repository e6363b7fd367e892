"""The flow prior: an exact inverse and log-determinant, a KL estimate that agrees with the
closed form where one exists, and the served encoder's push-forward into noise space."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from training.config import ConfigError, ModelConfig
from training.model import CVAE, ServedDecoder
from training.prior import FlowPrior, flow_kl, standard_kl


def _random_flow(seed: int = 0, latent_dim: int = 6) -> FlowPrior:
    torch.manual_seed(seed)
    flow = FlowPrior(latent_dim, num_classes=3, layers=3, hidden=16).double()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.normal_(std=0.4)
    return flow


def _jacobian_of_inverse(flow: FlowPrior, u: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None], label)[0][0], u)


def test_the_inverse_undoes_the_transform_and_its_log_det_is_exact() -> None:
    flow = _random_flow()
    eps, label = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    u = flow.transform(eps, label)
    back, log_det = flow.inverse(u, label)
    assert torch.allclose(back, eps, atol=1e-10)
    for row in range(4):
        jacobian = _jacobian_of_inverse(flow, u[row], label[row : row + 1])
        assert float(log_det[row].detach()) == pytest.approx(
            float(torch.linalg.slogdet(jacobian)[1])
        )


def test_to_noise_space_is_the_first_order_push_forward() -> None:
    flow = _random_flow(1)
    mu, label = torch.randn(3, 6, dtype=torch.float64), torch.tensor([2, 0, 1])
    logvar = torch.randn(3, 6, dtype=torch.float64) - 1
    mean, log_variance = flow.to_noise_space(mu, logvar, label)
    assert torch.allclose(mean, flow.inverse(mu, label)[0])
    for row in range(3):
        jacobian = _jacobian_of_inverse(flow, mu[row], label[row : row + 1])
        covariance = jacobian @ torch.diag(logvar[row].exp()) @ jacobian.T
        assert torch.allclose(log_variance[row], covariance.diagonal().log(), atol=1e-8)


def test_an_identity_flow_estimates_the_closed_form_kl() -> None:
    flow = FlowPrior(4, num_classes=2, layers=2, hidden=8).double()  # zero-initialised: identity
    torch.manual_seed(0)
    mu = torch.randn(1, 4, dtype=torch.float64).expand(200_000, 4)
    logvar = torch.full((200_000, 4), -1.0, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 4, dtype=torch.float64)
    label = torch.zeros(200_000, dtype=torch.int64)
    with torch.no_grad():  # a value to compare, no graph
        estimate = float(flow_kl(flow, z, mu, logvar, label).mean())
    assert estimate == pytest.approx(float(standard_kl(mu[:1], logvar[:1])), abs=0.02)


def test_a_flow_prior_model_serves_noise_through_the_flow(tiny_model_config: ModelConfig) -> None:
    config = dataclasses.replace(tiny_model_config, prior="flow", prior_layers=2, prior_hidden=8)
    model = CVAE(config).eval()
    served = model.served_decoder()
    assert isinstance(served, ServedDecoder)
    eps, label = torch.randn(5, config.latent_dim), torch.arange(5)
    with torch.no_grad():
        for parameter in model.prior.parameters():  # type: ignore[union-attr]
            parameter.normal_(std=0.3)
        expected = model.decoder(model.prior.transform(eps, label), label)  # type: ignore[union-attr]
        assert torch.equal(served(eps, label), expected)
        assert not torch.allclose(served(eps, label), model.decoder(eps, label))
        images = torch.rand(5, 28, 28)
        mean, _ = model.served_encoder()(images, label)
        mu, _ = model.encoder(images.unsqueeze(1), label)
        # the encoded mean, carried to noise space, decodes where the posterior mean does
        assert torch.allclose(served(mean, label), model.decoder(mu, label), atol=1e-5)
    _, _, _, kl = model(torch.rand(5, 1, 28, 28), label)
    assert kl.shape == (5,) and torch.isfinite(kl).all()


def test_a_flow_prior_needs_an_even_latent_size() -> None:
    with pytest.raises(ConfigError, match="even latent_dim"):
        ModelConfig(latent_dim=5, prior="flow")
    with pytest.raises(ConfigError, match="prior is standard or flow"):
        ModelConfig(prior="mixture")
