"""Score through a real `cvae serve` on an exported flow-prior version is the training's bound:
the same seed's noise, pushed through the torch model, gives the numbers the server returns."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cvae.v1 import generator_pb2 as pb
from export.exporter import export_checkpoint
from tests.service.serverproc import ServerProcess
from training.checkpoint import load_checkpoint
from training.data import load_mnist

pytestmark = pytest.mark.timeout(300)
_COUNT, _SEED = 6, 11


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    flow_checkpoint: Path,
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("served") / "models"
    export_checkpoint(flow_checkpoint, root, name="cvae-mnist")
    with ServerProcess(root, "--max-delay-ms", "5") as running:
        yield running


def _training_bound(checkpoint: Path, images: np.ndarray, samples: int) -> np.ndarray:
    """log (1/k) sum_i p(x|u_i,y) p(u_i|y) / Q(u_i|x,y), u_i = mu + sigma * eps_i, in torch, with
    the eps the server draws for this seed: (num_classes, N, k, latent) from PCG64(seed)."""
    model, _, _ = load_checkpoint(checkpoint)
    noise = np.random.Generator(np.random.PCG64(_SEED)).standard_normal(
        (10, len(images), samples, 8), dtype=np.float32
    )
    x = torch.from_numpy(images)
    bounds = np.zeros((len(images), 10))
    with torch.no_grad():
        for label in range(10):
            y = torch.full((len(images),), label, dtype=torch.int64)
            mu, logvar = model.encoder(x.unsqueeze(1), y)
            for i in range(len(images)):
                eps = torch.from_numpy(noise[label, i])  # (k, latent)
                u = mu[i] + torch.exp(0.5 * logvar[i]) * eps
                yk = y[:samples].new_full((samples,), label)
                p = model.decoder(u, yk).double().clamp(1e-7, 1 - 1e-7).reshape(samples, -1)
                xi = x[i].reshape(-1).double()
                log_px = (xi * p.log() + (1 - xi) * (-p).log1p()).sum(dim=1)
                log_q = -0.5 * (eps.pow(2) + logvar[i] + math.log(2 * math.pi)).sum(dim=1)
                log_w = log_px + model.prior_log_prob(u, yk).double() - log_q.double()
                bounds[i, label] = float(torch.logsumexp(log_w, dim=0) - math.log(samples))
    return bounds


@pytest.mark.parametrize("samples", [1, 5])
def test_score_on_a_flow_version_is_the_trainings_bound(
    server: ServerProcess,
    flow_checkpoint: Path,
    samples: int,
) -> None:
    images = load_mnist().test[0][:_COUNT].reshape(-1, 28, 28)
    tensor = pb.Tensor(shape=list(images.shape), dtype="float32", data=images.tobytes())
    response = server.stub.Score(
        pb.ScoreRequest(images=tensor, samples=samples, seed=_SEED), timeout=120
    )
    got = np.frombuffer(response.log_likelihood.data, dtype="<f4").reshape(_COUNT, 10)
    want = _training_bound(flow_checkpoint, images, samples)
    np.testing.assert_allclose(got, want, rtol=1e-4)
