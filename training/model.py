"""The conditional VAE: conv encoder Q(z|x,y) and conv decoder P(x|z,y), y at every decoder layer.

The decoder is its own module taking (z, integer label): it is the part that is exported and served.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import ModelConfig
from training.prior import FlowPrior, flow_kl, log_diagonal_normal, log_standard_normal, standard_kl


class LabelFiLM(nn.Module):
    """Feature-wise affine conditioning: h * (1 + gamma[y]) + beta[y], per channel."""

    def __init__(self, num_classes: int, channels: int) -> None:
        super().__init__()
        self.table = nn.Embedding(num_classes, 2 * channels)
        nn.init.zeros_(self.table.weight)

    def forward(self, h: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.table(label)[:, :, None, None].chunk(2, dim=1)  # (N, C, 1, 1) each
        return h * (1 + gamma) + beta


class _ConditionedConv(nn.Module):
    """conv (or transposed conv) -> FiLM(label) -> SiLU."""

    def __init__(self, conv: nn.Module, num_classes: int, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.film = LabelFiLM(num_classes, channels)

    def forward(self, h: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.silu(self.film(self.conv(h), label))


class Decoder(nn.Module):
    """P(x | z, y): (z (N, latent), label (N,) int64) -> pixel probabilities (N, H, W)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c_quarter, c_half, c_full = config.decoder_channels
        height, width = config.image_shape
        self._base_shape = (c_quarter, height // 4, width // 4)
        k = config.num_classes
        self.project = nn.Linear(config.latent_dim + k, c_quarter * (height // 4) * (width // 4))
        self.up_half = _ConditionedConv(nn.ConvTranspose2d(c_quarter, c_half, 4, 2, 1), k, c_half)
        self.refine_half = nn.ModuleList(
            _ConditionedConv(nn.Conv2d(c_half, c_half, 3, padding=1), k, c_half)
            for _ in range(config.decoder_refine_convs)
        )
        self.up_full = _ConditionedConv(nn.ConvTranspose2d(c_half, c_full, 4, 2, 1), k, c_full)
        self.refine_full = nn.ModuleList(
            _ConditionedConv(nn.Conv2d(c_full, c_full, 3, padding=1), k, c_full)
            for _ in range(config.decoder_refine_convs)
        )
        self.to_logits = nn.Conv2d(c_full, 1, 3, padding=1)

    def logits(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(label, self.config.num_classes).to(z.dtype)  # (N, K)
        h = F.silu(self.project(torch.cat([z, one_hot], dim=1)))
        h = h.view(-1, *self._base_shape)  # (N, C, H/4, W/4)
        h = self.up_half(h, label)  # (N, C, H/2, W/2)
        for block in self.refine_half:
            h = block(h, label)
        h = self.up_full(h, label)  # (N, C, H, W)
        for block in self.refine_full:
            h = block(h, label)
        return self.to_logits(h).squeeze(1)  # (N, H, W)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z, label))


class Encoder(nn.Module):
    """Q(z | x, y): (x (N, 1, H, W) in [0, 1], label (N,)) -> (mu, logvar), each (N, latent)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.encoder_channels
        height, width = config.image_shape
        k = config.num_classes
        self.conv1 = _ConditionedConv(nn.Conv2d(1, c1, 4, 2, 1), k, c1)
        self.conv2 = _ConditionedConv(nn.Conv2d(c1, c2, 4, 2, 1), k, c2)
        self.hidden = nn.Linear(c2 * (height // 4) * (width // 4) + k, config.encoder_hidden)
        self.to_stats = nn.Linear(config.encoder_hidden, 2 * config.latent_dim)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one_hot = F.one_hot(label, self.config.num_classes).to(x.dtype)  # (N, K)
        h = self.conv2(self.conv1(x, label), label).flatten(1)  # (N, C * H/4 * W/4)
        h = F.silu(self.hidden(torch.cat([h, one_hot], dim=1)))
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar


class ServedDecoder(nn.Module):
    """What is exported and served with a flow prior: eps ~ N(0, I) -> f(eps; y) -> decoder."""

    def __init__(self, prior: FlowPrior, decoder: Decoder) -> None:
        super().__init__()
        self.prior = prior
        self.decoder = decoder

    def logits(self, eps: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(self.prior.transform(eps, label), label)

    def forward(self, eps: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(eps, label))


class ServedEncoder(nn.Module):
    """Q(z|x,y) in the served latent space: image (N, H, W) in [0, 1], label (N,) ->
    (mean, log_variance), each (N, latent). With a flow prior, Q is carried into the noise
    space the served decoder takes (FlowPrior.to_noise_space)."""

    def __init__(self, encoder: Encoder, prior: FlowPrior | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.prior = prior

    def forward(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(image.unsqueeze(1), label)
        if self.prior is None:
            return mu, logvar
        return self.prior.to_noise_space(mu, logvar, label)


class ServedPosterior(nn.Module):
    """A sample of Q(z|x,y) in the served latent space and its log density there: image
    (N, H, W), label (N,), noise (N, latent) ~ N(0, I) -> (latent, log_density), (N, latent)
    and (N,). With a flow prior the sample u = mu + sigma * noise is drawn where the encoder
    was trained and carried exactly to the noise space, latent = f^-1(u; y), with the change of
    variables: log_density = log Q(u|x,y) - log |det d f^-1 / du|. So
    log p(x|latent,y) + log N(latent; 0, I) - log_density is the training's log-weight
    log p(x|u,y) + log p(u|y) - log Q(u|x,y), which importance-weighted bounds need; the
    first-order Gaussian of ServedEncoder is only a looser proposal."""

    def __init__(self, encoder: Encoder, prior: FlowPrior) -> None:
        super().__init__()
        self.encoder = encoder
        self.prior = prior

    def forward(
        self, image: torch.Tensor, label: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(image.unsqueeze(1), label)
        u = mu + torch.exp(0.5 * logvar) * noise
        latent, log_det = self.prior.inverse(u, label)
        return latent, log_diagonal_normal(u, mu, logvar) - log_det


class CVAE(nn.Module):
    """Encoder, decoder and prior together; `forward` gives what the negative ELBO needs."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.prior = (
            FlowPrior(
                config.latent_dim, config.num_classes, config.prior_layers, config.prior_hidden
            )
            if config.prior == "flow"
            else None
        )

    def served_decoder(self) -> nn.Module:
        """(z ~ N(0, I), label) -> image: the decoder itself, or the flow prior then it."""
        return self.decoder if self.prior is None else ServedDecoder(self.prior, self.decoder)

    def served_encoder(self) -> ServedEncoder:
        return ServedEncoder(self.encoder, self.prior)

    def served_posterior(self) -> ServedPosterior | None:
        """The exact posterior sampler of a flow prior; None with N(0, I), where the served
        encoder's Gaussian already is Q."""
        return None if self.prior is None else ServedPosterior(self.encoder, self.prior)

    def kl(
        self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, label: torch.Tensor
    ) -> torch.Tensor:
        """KL(Q(z|x,y) || p(z|y)) per image, (N,): closed form for N(0, I), else the
        single-sample estimate at z."""
        if self.prior is None:
            return standard_kl(mu, logvar)
        return flow_kl(self.prior, z, mu, logvar, label)

    def prior_log_prob(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return log_standard_normal(z) if self.prior is None else self.prior.log_prob(z, label)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, so gradients flow through the sample."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def encode(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, label)  # type: ignore[no-any-return]

    def decode(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, label)  # type: ignore[no-any-return]

    def forward(
        self, x: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, mu, logvar, kl per image) at one reparameterised sample z."""
        mu, logvar = self.encoder(x, label)
        mu, logvar = mu.float(), logvar.float()  # the sample and the KL in float32
        z = self.reparameterize(mu, logvar)
        with torch.autocast(z.device.type, enabled=False):
            kl = self.kl(z, mu, logvar, label)
        return self.decoder.logits(z, label), mu, logvar, kl

    @torch.no_grad()
    def sample(
        self,
        label: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images (N, H, W) for the given labels, z ~ N(0, temperature^2 I) into the served
        decoder."""
        z = torch.randn(
            len(label), self.config.latent_dim, generator=generator, device=label.device
        )
        return self.served_decoder()(temperature * z, label)  # type: ignore[no-any-return]
