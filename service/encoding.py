"""The data plane of the RPCs that start from real images: encode, reconstruct, restyle, score.

Knows no protocol. Encoder and decoder rows go through the same DynamicBatcher (same queue bound,
deadlines and metrics as Generate); the encoder is its own graph object, so its rows never share
an onnxruntime call with decoder rows.

Score: for image x and label y, with p(x|z,y) Bernoulli with the decoder's image as mean and
q(z|x,y) a proposal in the decoder's latent space, the bound on log p(x|y) in nats is
log (1/k) sum_i p(x|z_i,y) N(z_i; 0, I) / q(z_i|x,y) (Burda et al., 2016; k = 1: the ELBO).
eps ~ N(0, I) from PCG64(seed), drawn as one (num_classes, N, k, latent_dim) array. The proposal:
- a version with a posterior sampler (a flow prior's, model.json "posterior"): Q(u|x,y) itself,
  sampled where the encoder was trained and carried exactly into the decoder's space by the
  graph, which gives z_i and log q(z_i|x,y); so the bound is the training's and the evaluator's
  (its log-weight is log p(x|u,y) + log p(u|y) - log Q(u|x,y));
- otherwise the encoder's Gaussian (mu, log sigma^2), z_i = mu + sigma * eps_i; with N(0, I)
  as prior that is Q itself, and at k = 1 the KL is taken in closed form (as `cvae evaluate`
  computes the test ELBO). A flow-prior version without a posterior sampler (version 3) gets
  the encoder's first-order Gaussian, a valid but looser proposal.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np

from service.batcher import DynamicBatcher
from service.encoder import EncoderRuntime
from service.errors import ServiceError
from service.generator import GeneratedImages
from service.runtime import ModelRuntime
from service.sampler import draw_seed

_LOG_2PI = math.log(2.0 * math.pi)
# Pixel probabilities are clipped to [EPS, 1 - EPS] before the log: a float32 sigmoid that
# rounded to exactly 0 or 1 would give -inf (at most ~16 nats per pixel instead).
_PIXEL_EPS = 1e-7


class NoEncoder(ServiceError):
    """The model version has no encoder: the RPC cannot run on it."""

    code = "FAILED_PRECONDITION"


def encoder_of(runtime: ModelRuntime) -> EncoderRuntime:
    encoder = runtime.encoder
    if encoder is None:
        raise NoEncoder(
            f"model_version: {runtime.name} version {runtime.version} ships no encoder "
            '(model.json has no "encoder"), so it cannot encode, reconstruct, restyle or '
            "score images; pin a version that has one"
        )
    return encoder


@dataclass(frozen=True)
class Scores:
    """The bound on log p(x|y), float64 (N, num_classes), and how it was drawn."""

    log_likelihood: np.ndarray
    seed: int
    samples: int


class ImageEncoder:
    """Runs encoder and decoder work for one request through the batcher."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher

    async def encode(
        self,
        runtime: ModelRuntime,
        images: np.ndarray,
        labels: np.ndarray,
        deadline: float | None,
        wait_for_room: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log_variance) of Q(z|x,y), each float32 (N, latent_dim)."""
        encoder = encoder_of(runtime)
        stats = await self._batcher.run(encoder, images, labels, deadline, wait_for_room)
        return encoder.split(stats)

    async def reconstruct(
        self, runtime: ModelRuntime, images: np.ndarray, labels: np.ndarray, deadline: float | None
    ) -> GeneratedImages:
        return await self.restyle(runtime, images, labels, None, deadline)

    async def restyle(
        self,
        runtime: ModelRuntime,
        images: np.ndarray,
        labels: np.ndarray,
        targets: np.ndarray | None,
        deadline: float | None,
    ) -> GeneratedImages:
        """Each image's posterior mean decoded under each target (image-major), or under its
        own label when `targets` is None."""
        encoder_of(runtime)
        self._batcher.admit(len(images), deadline)
        mean, _ = await self.encode(runtime, images, labels, deadline)
        if targets is None:
            latents, out_labels = mean, labels
        else:
            latents = np.repeat(mean, len(targets), axis=0)
            out_labels = np.tile(targets, len(images))
        decoded = await self._batcher.run(runtime, latents, out_labels, deadline, True)
        return GeneratedImages(runtime, decoded, out_labels, latents, None, 0)

    async def score(
        self,
        runtime: ModelRuntime,
        images: np.ndarray,
        samples: int,
        seed: int | None,
        deadline: float | None,
    ) -> Scores:
        """The bound on log p(x|y) for every image and every label."""
        encoder_of(runtime)
        self._batcher.admit(len(images), deadline)
        seed = draw_seed() if seed is None else seed
        spec = runtime.spec
        count = len(images)
        generator = np.random.Generator(np.random.PCG64(seed))
        noise = generator.standard_normal(
            (spec.num_classes, count, samples, spec.latent_dim), dtype=np.float32
        )
        tasks = [
            asyncio.ensure_future(
                self._score_label(runtime, images, label, noise[label], deadline, label > 0)
            )
            for label in range(spec.num_classes)
        ]
        try:
            columns = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return Scores(np.stack(columns, axis=1), seed, samples)

    async def _score_label(
        self,
        runtime: ModelRuntime,
        images: np.ndarray,
        label: int,
        noise: np.ndarray,
        deadline: float | None,
        wait_for_room: bool,
    ) -> np.ndarray:
        """The bound under one label: the version's posterior sampler as the proposal when it
        ships one, else the encoder's Gaussian."""
        count, samples, latent_dim = noise.shape
        loop = asyncio.get_running_loop()
        rows = np.full(count * samples, label, dtype=np.int64)
        posterior = runtime.posterior
        if posterior is not None:
            packed = await loop.run_in_executor(
                None,
                posterior.pack,
                np.repeat(images, samples, axis=0),
                noise.reshape(count * samples, latent_dim),
            )
            drawn = await self._batcher.run(posterior, packed, rows, deadline, wait_for_room)
            z, log_density = posterior.split(drawn)
            z = np.ascontiguousarray(z)
            means = await self._batcher.run(runtime, z, rows, deadline, True)
            return await loop.run_in_executor(
                None, importance_weighted_bound, images, means, z, log_density, samples
            )
        labels = np.full(count, label, dtype=np.int64)
        mean, log_variance = await self.encode(runtime, images, labels, deadline, wait_for_room)
        z = mean[:, None, :] + np.exp(0.5 * log_variance)[:, None, :] * noise
        z = z.reshape(count * samples, latent_dim).astype(np.float32, copy=False)
        means = await self._batcher.run(runtime, z, rows, deadline, True)
        return await loop.run_in_executor(
            None, log_likelihood_bound, images, means, z, mean, log_variance, samples
        )


def log_bernoulli(images: np.ndarray, means: np.ndarray) -> np.ndarray:
    """log p(x | mean) summed over pixels, float64 (rows,); images (N, H, W) broadcast over
    `means` (N * k, H, W) when k > 1."""
    rows = means.shape[0]
    p = np.clip(means.reshape(rows, -1).astype(np.float64), _PIXEL_EPS, 1.0 - _PIXEL_EPS)
    x = images.reshape(images.shape[0], -1).astype(np.float64)
    if rows != x.shape[0]:
        x = np.repeat(x, rows // x.shape[0], axis=0)
    return (x * np.log(p) + (1.0 - x) * np.log1p(-p)).sum(axis=1)


def log_likelihood_bound(
    images: np.ndarray,
    means: np.ndarray,
    z: np.ndarray,
    mean: np.ndarray,
    log_variance: np.ndarray,
    samples: int,
) -> np.ndarray:
    """The bound on log p(x|y) per image, float64 (N,) (see the module docstring)."""
    count, latent_dim = mean.shape
    mu = mean.astype(np.float64)
    log_var = log_variance.astype(np.float64)
    if samples == 1:
        kl = 0.5 * (mu**2 + np.expm1(log_var) - log_var).sum(axis=1)
        return np.asarray(log_bernoulli(images, means) - kl)
    zs = z.astype(np.float64).reshape(count, samples, latent_dim)
    log_q = -0.5 * (
        (zs - mu[:, None, :]) ** 2 * np.exp(-log_var)[:, None, :] + log_var[:, None, :] + _LOG_2PI
    ).sum(axis=2)
    return importance_weighted_bound(images, means, z, log_q, samples)


def importance_weighted_bound(
    images: np.ndarray, means: np.ndarray, z: np.ndarray, log_q: np.ndarray, samples: int
) -> np.ndarray:
    """The bound per image, float64 (N,), given each sample's z (N * k, latent_dim) and its log
    density under the proposal, log_q (N * k,)."""
    count = len(images)
    log_px = log_bernoulli(images, means).reshape(count, samples)
    log_prior = -0.5 * (z.astype(np.float64) ** 2 + _LOG_2PI).sum(axis=1).reshape(count, samples)
    return _log_mean_exp(log_px + log_prior - log_q.astype(np.float64).reshape(count, samples))


def _log_mean_exp(log_w: np.ndarray) -> np.ndarray:
    """log (1/k) sum_i exp(log_w[:, i]), stably, (N,)."""
    top = log_w.max(axis=1, keepdims=True)
    return np.asarray(top[:, 0] + np.log(np.exp(log_w - top).mean(axis=1)))
