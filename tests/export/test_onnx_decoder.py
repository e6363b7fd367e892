"""The exported decoder graph: the contract's names and types, a dynamic batch, PyTorch parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.onnx_decoder import (
    OnnxExportError,
    check_graph,
    check_parity,
    export_decoder,
    opset_of,
    parity_error,
)
from tests.export.conftest import SMALL_MODEL, small_model
from training.config import ModelConfig
from training.model import CVAE

_PARITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model = small_model(seed=3)
    path = tmp_path_factory.mktemp("onnx") / "decoder.onnx"
    export_decoder(model.decoder, SMALL_MODEL.latent_dim, path)
    return model.decoder, path


@pytest.mark.parametrize("batch", [1, 7, 512])
def test_onnxruntime_matches_pytorch(exported: tuple[torch.nn.Module, Path], batch: int) -> None:
    decoder, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(batch)
    z = rng.standard_normal((batch, SMALL_MODEL.latent_dim)).astype(np.float32)
    label = rng.integers(0, SMALL_MODEL.num_classes, batch).astype(np.int64)
    (image,) = session.run(["image"], {"z": z, "label": label})
    with torch.no_grad():
        expected = decoder(torch.from_numpy(z), torch.from_numpy(label)).numpy()
    assert image.shape == (batch, *SMALL_MODEL.image_shape) and image.dtype == np.float32
    assert np.abs(image - expected).max() <= _PARITY_TOLERANCE
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_label_changes_the_image(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z = np.zeros((2, SMALL_MODEL.latent_dim), np.float32)
    (image,) = session.run(None, {"z": z, "label": np.array([0, 1], np.int64)})
    assert np.abs(image[0] - image[1]).max() > 1e-3


def test_graph_passes_checker_and_contract(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    check_graph(graph, SMALL_MODEL.latent_dim)
    assert opset_of(graph) == 18
    assert [value.name for value in graph.graph.input] == ["z", "label"]
    assert [value.name for value in graph.graph.output] == ["image"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_contract_check_rejects_a_renamed_input(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    graph = onnx.load(str(path))
    graph.graph.input[0].name = "latent"
    for node in graph.graph.node:
        node.input[:] = ["latent" if name == "z" else name for name in node.input]
    with pytest.raises(OnnxExportError, match="inputs"):
        check_graph(graph, SMALL_MODEL.latent_dim)


def test_contract_check_rejects_a_wrong_latent_size(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    with pytest.raises(OnnxExportError, match="inputs"):
        check_graph(onnx.load(str(path)), SMALL_MODEL.latent_dim + 1)


def test_default_architecture_exports_with_parity(tmp_path: Path) -> None:
    """The shipped model's architecture (ModelConfig defaults), not only the small test one."""
    torch.manual_seed(0)
    decoder = CVAE(ModelConfig()).decoder.eval()
    with torch.no_grad():
        for name, parameter in decoder.named_parameters():
            if "film" in name:
                parameter.normal_(0.0, 0.3)
    path = tmp_path / "decoder.onnx"
    export_decoder(decoder, ModelConfig().latent_dim, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 7, 512):
        z = rng.standard_normal((batch, ModelConfig().latent_dim)).astype(np.float32)
        label = rng.integers(0, 10, batch).astype(np.int64)
        (image,) = session.run(None, {"z": z, "label": label})
        with torch.no_grad():
            expected = decoder(torch.from_numpy(z), torch.from_numpy(label)).numpy()
        assert np.abs(image - expected).max() <= _PARITY_TOLERANCE, batch


def test_parity_check_catches_a_graph_that_drifted(exported: tuple[torch.nn.Module, Path]) -> None:
    decoder, path = exported
    assert parity_error(decoder, path, SMALL_MODEL.latent_dim, SMALL_MODEL.num_classes) <= 1e-5
    other = small_model(seed=4).decoder  # same architecture, other weights
    with pytest.raises(OnnxExportError, match="differs"):
        check_parity(other, path, SMALL_MODEL.latent_dim, SMALL_MODEL.num_classes)
