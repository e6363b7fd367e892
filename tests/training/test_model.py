"""training/model.py: shapes, ranges and the label actually steering the decoder."""

from __future__ import annotations

import dataclasses

import torch

from training.config import ModelConfig
from training.model import CVAE, Decoder, Encoder


def test_decoder_maps_latents_and_labels_to_pixel_probabilities(
    tiny_model_config: ModelConfig,
) -> None:
    decoder = Decoder(tiny_model_config)
    z = torch.randn(7, tiny_model_config.latent_dim)
    label = torch.arange(7) % 10
    with torch.no_grad():
        images = decoder(z, label)
        logits = decoder.logits(z, label)
    assert images.shape == (7, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    torch.testing.assert_close(torch.sigmoid(logits), images)


def test_encoder_gives_mean_and_log_variance_per_latent_dim(tiny_model_config: ModelConfig) -> None:
    mu, logvar = Encoder(tiny_model_config)(torch.rand(5, 1, 28, 28), torch.arange(5))
    assert mu.shape == logvar.shape == (5, tiny_model_config.latent_dim)


def test_cvae_forward_returns_logits_posterior_and_kl(tiny_model_config: ModelConfig) -> None:
    model = CVAE(dataclasses.replace(tiny_model_config, prior="standard"))
    logits, mu, logvar, kl = model(torch.rand(3, 1, 28, 28), torch.tensor([0, 4, 9]))
    assert logits.shape == (3, 28, 28)
    assert mu.shape == logvar.shape == (3, tiny_model_config.latent_dim)
    assert torch.isfinite(logits).all()
    expected = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
    assert torch.allclose(kl, expected, atol=1e-5)  # closed form against N(0, I)


def test_reparameterize_is_mean_plus_scaled_noise() -> None:
    mu, logvar = (
        torch.full((20000, 2), 3.0),
        torch.full((20000, 2), 2 * torch.log(torch.tensor(0.5))),
    )
    z = CVAE.reparameterize(mu, logvar)
    assert abs(float(z.mean()) - 3.0) < 0.02 and abs(float(z.std()) - 0.5) < 0.02
    assert CVAE.reparameterize(mu, torch.full_like(logvar, -1e4)).equal(mu)


def test_the_label_changes_the_decoded_image(tiny_model_config: ModelConfig) -> None:
    decoder = Decoder(tiny_model_config)
    for parameter in decoder.parameters():  # FiLM tables start at zero: give them a value
        torch.nn.init.normal_(parameter, std=0.3)
    z = torch.randn(1, tiny_model_config.latent_dim).repeat(10, 1)
    images = decoder(z, torch.arange(10))
    assert all(not torch.allclose(images[0], images[k]) for k in range(1, 10))


def test_samples_follow_the_prior_scaled_by_temperature(tiny_model_config: ModelConfig) -> None:
    model = CVAE(tiny_model_config).eval()
    labels = torch.arange(10)
    first = model.sample(labels, 1.0, generator=torch.Generator().manual_seed(3))
    again = model.sample(labels, 1.0, generator=torch.Generator().manual_seed(3))
    assert first.shape == (10, 28, 28) and first.equal(again)


def test_the_default_decoder_stays_within_the_serving_budget() -> None:
    from training.describe import model_costs

    costs = model_costs(ModelConfig())
    # PERF-NOTES: a ~13.5 MFLOP conv decoder served ~8.8k images/s; keep the default near that.
    assert 5 < costs["decoder_mflops_per_image"] <= 15
    assert costs["decoder_parameters"] < 1_000_000
