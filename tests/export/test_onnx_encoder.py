"""The exported encoder graph and the flow prior's decoder: contract, parity with torch on real
digits, the encoder-decoder round trip through onnxruntime, and no machine paths in any graph."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.exporter import export_checkpoint
from export.onnx_encoder import check_encoder_graph, encoder_parity_error
from modelrepo import read_spec
from tests.export.conftest import SMALL_MODEL, small_model
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import load_mnist

FLOW_MODEL = dataclasses.replace(SMALL_MODEL, prior="flow", prior_layers=2, prior_hidden=16)
_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(5)
    model = small_model()
    flow = type(model)(FLOW_MODEL)
    flow.encoder.load_state_dict(model.encoder.state_dict())
    flow.decoder.load_state_dict(model.decoder.state_dict())
    with torch.no_grad():
        for parameter in flow.prior.parameters():  # type: ignore[union-attr]
            parameter.normal_(std=0.2)
    path = tmp_path_factory.mktemp("flow") / "flow.pt"
    save_checkpoint(path, flow.eval(), TrainConfig(model=FLOW_MODEL, epochs=1))
    return path


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
    assert bare.encoder is None
    assert sorted(path.name for path in versions["bare"].iterdir()) == ["model.json", "model.onnx"]


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
