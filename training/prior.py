"""The prior p(z | y): N(0, I), or a label-conditioned normalizing flow of N(0, I) noise.

The flow prior is u = f(eps; y), eps ~ N(0, I): alternating affine coupling layers (RealNVP,
Dinh et al. 2017) whose scale and shift networks see the label, then a per-label affine map.
It is learned with the rest of the model on the ELBO: the KL term KL(Q(u|x,y) || p(u|y)) has no
closed form, so it is estimated with the same reparameterised sample the decoder sees,
log Q(u|x,y) - log p(u|y), where log p(u|y) = log N(f^-1(u; y); 0, I) + log |det df^-1/du|.

The served decoder takes eps (client latents keep meaning N(0, I) noise): it is f followed by the
decoder. The served encoder gives Q in eps space: mean f^-1(mu; y) and the variances of the
first-order push-forward, diag(J diag(sigma^2) J^T) with J = df^-1/du at mu, propagated through
the layers exactly (forward-mode, in closed form).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_LOG_2PI = math.log(2.0 * math.pi)
_SCALE_LIMIT = 3.0  # |log scale| of a coupling layer stays below this (soft clamp by tanh)

PRIORS = ("standard", "flow")


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.pow(2) + _LOG_2PI).sum(dim=-1)


def log_diagonal_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(dim=-1)


class _Coupling(nn.Module):
    """(b, a) -> (a, b * exp(s(a, y)) + t(a, y)) on halves of the vector; the halves swap places,
    so consecutive layers change alternate halves."""

    def __init__(self, dim: int, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.kept = dim - dim // 2  # size of a, the half that conditions
        self.changed = dim // 2  # size of b
        self.inp = nn.Linear(self.kept, hidden)
        self.label = nn.Embedding(num_classes, hidden)
        self.out = nn.Linear(hidden, 2 * self.changed)
        nn.init.zeros_(self.label.weight)
        nn.init.zeros_(self.out.weight)  # identity at the start
        nn.init.zeros_(self.out.bias)

    def _hidden(self, a: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(a) + self.label(label))

    def _scale_shift(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw_s, t = self.out(hidden).chunk(2, dim=1)
        squashed = torch.tanh(raw_s / _SCALE_LIMIT)
        return _SCALE_LIMIT * squashed, t, squashed

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Sampling direction: x = (b, a) -> (a, b')."""
        b, a = x[:, : self.changed], x[:, self.changed :]
        s, t, _ = self._scale_shift(self._hidden(a, label))
        return torch.cat([a, b * torch.exp(s) + t], dim=1)

    def inverse(self, y: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction: (a, b') -> (b, a) and log |det| of this inverse, (N,)."""
        a, b_out = y[:, : self.kept], y[:, self.kept :]
        s, t, _ = self._scale_shift(self._hidden(a, label))
        return torch.cat([(b_out - t) * torch.exp(-s), a], dim=1), -s.sum(dim=1)

    def inverse_tangent(
        self, y: torch.Tensor, tangent: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`inverse` and its Jacobian applied to `tangent` (N, D, M): the columns move along."""
        a, b_out = y[:, : self.kept], y[:, self.kept :]
        ta, tb = tangent[:, : self.kept], tangent[:, self.kept :]
        hidden = self._hidden(a, label)
        s, t, squashed = self._scale_shift(hidden)
        d_hidden = (1 - hidden.pow(2)).unsqueeze(2) * torch.matmul(self.inp.weight, ta)
        d_raw = torch.matmul(self.out.weight, d_hidden)  # (N, 2 * changed, M)
        d_s = (1 - squashed.pow(2)).unsqueeze(2) * d_raw[:, : self.changed]
        d_t = d_raw[:, self.changed :]
        b = (b_out - t) * torch.exp(-s)
        d_b = (tb - d_t) * torch.exp(-s).unsqueeze(2) - b.unsqueeze(2) * d_s
        return torch.cat([b, a], dim=1), torch.cat([d_b, ta], dim=1)


class FlowPrior(nn.Module):
    """u = f(eps; y): coupling layers, then u = v * exp(log_scale[y]) + shift[y]."""

    def __init__(self, latent_dim: int, num_classes: int, layers: int, hidden: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.couplings: list[_Coupling] = nn.ModuleList(  # type: ignore[assignment]
            _Coupling(latent_dim, num_classes, hidden) for _ in range(layers)
        )
        self.log_scale = nn.Embedding(num_classes, latent_dim)
        self.shift = nn.Embedding(num_classes, latent_dim)
        nn.init.zeros_(self.log_scale.weight)
        nn.init.zeros_(self.shift.weight)
        # a layer's output order (a, b') differs from its input's (b, a) when the halves differ
        # in size; with an even latent size they are the same and the layers chain directly.
        if latent_dim % 2:
            raise ValueError("the flow prior needs an even latent_dim")

    def transform(self, eps: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """eps (N, D) ~ N(0, I) -> u (N, D) ~ p(u | y)."""
        x = eps
        for layer in self.couplings:
            x = layer(x, label)
        return x * torch.exp(self.log_scale(label)) + self.shift(label)

    def inverse(self, u: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u -> (eps, log |det d eps / d u|)."""
        log_scale = self.log_scale(label)
        x = (u - self.shift(label)) * torch.exp(-log_scale)
        log_det = -log_scale.sum(dim=1)
        for layer in reversed(self.couplings):
            x, layer_log_det = layer.inverse(x, label)
            log_det = log_det + layer_log_det
        return x, log_det

    def log_prob(self, u: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        eps, log_det = self.inverse(u, label)
        return log_standard_normal(eps) + log_det

    def to_noise_space(
        self, mu: torch.Tensor, logvar: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Q(u|x,y) = N(mu, diag exp(logvar)) carried to eps space, to first order at mu:
        (f^-1(mu), log diag(J diag(sigma^2) J^T)), J = d f^-1 / du at mu."""
        log_scale = self.log_scale(label)
        x = (mu - self.shift(label)) * torch.exp(-log_scale)
        # tangent columns: J diag(sigma); starts diagonal
        tangent = torch.diag_embed(torch.exp(0.5 * logvar - log_scale))
        for layer in reversed(self.couplings):
            x, tangent = layer.inverse_tangent(x, tangent, label)
        return x, torch.log(tangent.pow(2).sum(dim=2))


def flow_kl(
    prior: FlowPrior,
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    label: torch.Tensor,
) -> torch.Tensor:
    """Single-sample estimate of KL(Q(u|x,y) || p(u|y)) per image, (N,), at the sample z."""
    return log_diagonal_normal(z, mu, logvar) - prior.log_prob(z, label)


def standard_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per image, (N,), in closed form."""
    return (0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)).clamp_min(0.0).sum(dim=1)
