"""Small, untrained but non-trivial CVAE checkpoints to export (fast to build and to export):
with the standard prior, and with a flow prior."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from training.checkpoint import save_checkpoint
from training.config import ModelConfig, TrainConfig
from training.model import CVAE

SMALL_MODEL = ModelConfig(
    latent_dim=8,
    encoder_channels=(8, 8),
    encoder_hidden=32,
    decoder_channels=(16, 8, 8),
    decoder_refine_convs=1,
    prior="standard",  # the decoder alone is served; tests/export/test_onnx_encoder.py has a flow
)


def small_model(seed: int = 0) -> CVAE:
    """Random weights everywhere, label tables included (they start at zero in a fresh model)."""
    torch.manual_seed(seed)
    model = CVAE(SMALL_MODEL)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "film" in name:
                parameter.normal_(0.0, 0.3)
    return model.eval()


FLOW_MODEL = dataclasses.replace(SMALL_MODEL, prior="flow", prior_layers=2, prior_hidden=16)


@pytest.fixture(scope="package")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "small.pt"
    save_checkpoint(path, small_model(), TrainConfig(model=SMALL_MODEL, epochs=1))
    return path


@pytest.fixture(scope="package")
def flow_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model's encoder and decoder under a flow prior of random, non-trivial weights."""
    torch.manual_seed(5)
    model = small_model()
    flow = CVAE(FLOW_MODEL)
    flow.encoder.load_state_dict(model.encoder.state_dict())
    flow.decoder.load_state_dict(model.decoder.state_dict())
    with torch.no_grad():
        for parameter in flow.prior.parameters():  # type: ignore[union-attr]
            parameter.normal_(std=0.2)
    path = tmp_path_factory.mktemp("flow") / "flow.pt"
    save_checkpoint(path, flow.eval(), TrainConfig(model=FLOW_MODEL, epochs=1))
    return path


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine run far faster on one thread than on two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
