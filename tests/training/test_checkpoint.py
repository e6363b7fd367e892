"""training/checkpoint.py: a checkpoint rebuilds an identical model from the file alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.model import CVAE


def test_checkpoint_round_trip_rebuilds_an_identical_model(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    model = CVAE(tiny_train_config.model)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, tiny_train_config, {"epoch": 3, "note": "x"})
    loaded, config, extra = load_checkpoint(path)
    assert config == tiny_train_config and extra == {"epoch": 3, "note": "x"}
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    z, label = torch.randn(4, config.model.latent_dim), torch.tensor([0, 1, 2, 9])
    assert torch.equal(model.decoder(z, label), loaded.decoder(z, label))
    torch.load(path, weights_only=True)  # plain data only: safe loading works


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(CheckpointError, match="not a CVAE checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_a_checkpoint_from_before_the_prior_option_loads_with_the_standard_prior(
    tmp_path: Path, tiny_train_config: TrainConfig
) -> None:
    import dataclasses

    standard = dataclasses.replace(
        tiny_train_config, model=dataclasses.replace(tiny_train_config.model, prior="standard")
    )
    path = tmp_path / "old.pt"
    save_checkpoint(path, CVAE(standard.model), standard)
    payload = torch.load(path, weights_only=True)
    del payload["train_config"]["model"]["prior"]  # as versions 1 and 2 were written
    torch.save(payload, path)
    model, config, _ = load_checkpoint(path)
    assert config.model.prior == "standard" and model.prior is None
