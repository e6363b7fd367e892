"""The exported encoder graph, the flow prior's decoder and its posterior sampler: contract,
parity with torch on real digits, the encoder-decoder round trip through onnxruntime, the
sampler's log-weights equal to the training's, and no machine paths in any graph."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.exporter import export_checkpoint
from export.onnx_encoder import (
    check_encoder_graph,
    check_posterior_graph,
    encoder_parity_error,
    posterior_parity_error,
)
from modelrepo import read_spec
from tests.export.conftest import FLOW_MODEL, SMALL_MODEL
from training.checkpoint import load_checkpoint
from training.data import load_mnist

_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def versions(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, flow_checkpoint: Path
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "standard": export_checkpoint(checkpoint, root, name="standard"),
        "flow": export_checkpoint(flow_checkpoint, root, name="flow"),
        "bare": export_checkpoint(checkpoint, root, name="bare", with_encoder=False),
    }


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_mnist().test
    return images[:200].reshape(-1, 28, 28), labels[:200]


def test_model_json_describes_the_encoder(versions: dict[str, Path]) -> None:
    for kind in ("standard", "flow"):
        spec = read_spec(versions[kind])  # checks the sha256 of both graphs
        assert spec.encoder is not None
        assert spec.encoder.file == "encoder.onnx"
        assert dict(spec.encoder.inputs) == {"image": "image", "label": "label"}
        assert dict(spec.encoder.outputs) == {"mean": "mean", "log_variance": "log_variance"}
        graph = onnx.load(str(spec.path_of(spec.encoder)))
        check_encoder_graph(graph, (28, 28), SMALL_MODEL.latent_dim)
    bare = read_spec(versions["bare"])
    assert bare.encoder is None and bare.posterior is None
    assert sorted(path.name for path in versions["bare"].iterdir()) == ["model.json", "model.onnx"]


def test_only_a_flow_version_ships_the_posterior_sampler(versions: dict[str, Path]) -> None:
    """With N(0, I) as prior the encoder's Gaussian is Q itself; with a flow it is not."""
    assert read_spec(versions["standard"]).posterior is None
    assert not (versions["standard"] / "posterior.onnx").exists()
    spec = read_spec(versions["flow"])
    assert spec.posterior is not None and spec.posterior.file == "posterior.onnx"
    assert dict(spec.posterior.inputs) == {"image": "image", "label": "label", "noise": "noise"}
    assert dict(spec.posterior.outputs) == {"latent": "latent", "log_density": "log_density"}
    graph = onnx.load(str(spec.path_of(spec.posterior)))
    check_posterior_graph(graph, (28, 28), FLOW_MODEL.latent_dim)


def test_the_posterior_sampler_matches_torch_and_gives_the_trainings_log_weights(
    versions: dict[str, Path], flow_checkpoint: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """log N(latent; 0, I) - log_density from the graph equals log p(u|y) - log Q(u|x,y) of the
    training at u = mu + sigma * noise, and the latent decodes to the decoder's image of u: so a
    bound built on it is the evaluator's."""
    model, _, _ = load_checkpoint(flow_checkpoint)
    images, labels = digits
    noise = np.random.default_rng(3).standard_normal((len(labels), 8), dtype=np.float32)
    path = versions["flow"] / "posterior.onnx"
    latent_error, density_error = posterior_parity_error(
        model.served_posterior(), path, images, labels, noise
    )
    assert latent_error <= 1e-4 and density_error <= 1e-4
    session = ort.InferenceSession(str(path))
    latent, log_density = session.run(None, {"image": images, "label": labels, "noise": noise})
    x, y, eps = (torch.from_numpy(a) for a in (images, labels, noise))
    with torch.no_grad():
        mu, logvar = model.encoder(x.unsqueeze(1), y)
        u = mu + torch.exp(0.5 * logvar) * eps
        log_q = -0.5 * (eps.pow(2) + logvar + np.log(2 * np.pi)).sum(dim=1)
        want = (model.prior_log_prob(u, y) - log_q).numpy()
        decoded_u = model.decoder(u, y).numpy()
    got = -0.5 * (latent.astype(np.float64) ** 2 + np.log(2 * np.pi)).sum(axis=1) - log_density
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    decoder = ort.InferenceSession(str(versions["flow"] / "model.onnx"))
    (decoded,) = decoder.run(None, {"z": latent, "label": labels})
    assert np.abs(decoded - decoded_u).max() <= 1e-4


@pytest.mark.parametrize("kind", ["standard", "flow"])
def test_the_encoder_matches_torch_on_real_digits(
    versions: dict[str, Path],
    checkpoint: Path,
    flow_checkpoint: Path,
    digits: tuple[np.ndarray, np.ndarray],
    kind: str,
) -> None:
    model, _, _ = load_checkpoint(checkpoint if kind == "standard" else flow_checkpoint)
    path = versions[kind] / "encoder.onnx"
    assert encoder_parity_error(model.served_encoder(), path, *digits) <= 1e-4


def test_a_flow_version_decodes_its_own_encodings(
    versions: dict[str, Path], flow_checkpoint: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Encode in onnxruntime, decode the mean in onnxruntime: the torch model's reconstruction
    from the posterior mean, so encoder and decoder agree on the served latent space."""
    model, _, _ = load_checkpoint(flow_checkpoint)
    images, labels = digits
    encoder = ort.InferenceSession(str(versions["flow"] / "encoder.onnx"))
    decoder = ort.InferenceSession(str(versions["flow"] / "model.onnx"))
    mean, log_variance = encoder.run(None, {"image": images, "label": labels})
    assert np.isfinite(log_variance).all()
    (decoded,) = decoder.run(None, {"z": mean, "label": labels})
    with torch.no_grad():
        mu, _ = model.encoder(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels))
        expected = model.decoder(mu, torch.from_numpy(labels)).numpy()
    assert np.abs(decoded - expected).max() <= 1e-4


def test_no_graph_names_a_path_of_the_machine_that_built_it(versions: dict[str, Path]) -> None:
    for folder in versions.values():
        for path in folder.glob("*.onnx"):
            raw = path.read_bytes()
            assert _REPOSITORY_ROOT.encode() not in raw, path
            assert b"site-packages" not in raw and b'File "/' not in raw, path
            assert not re.search(rb"/[\w./-]+\.py", raw), path
            graph = onnx.load(str(path))
            assert not any(node.metadata_props for node in graph.graph.node), path
        description = json.loads((folder / "model.json").read_text())
        assert _REPOSITORY_ROOT not in json.dumps(description["training_config"])
