"""Shared fixtures: a private cache folder and tiny configurations that train in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ModelConfig, TrainConfig


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cvae-cache"))


@pytest.fixture
def tiny_model_config() -> ModelConfig:
    return ModelConfig(
        latent_dim=4, encoder_channels=(4, 8), encoder_hidden=16, decoder_channels=(8, 4, 4)
    )


@pytest.fixture
def tiny_train_config(tiny_model_config: ModelConfig) -> TrainConfig:
    return TrainConfig(
        model=tiny_model_config,
        epochs=1,
        batch_size=64,
        train_subset=256,
        valid_subset=128,
        kl_warmup_epochs=0.5,
    )


def write_idx(path: Path, array, magic_dims: int) -> None:  # type: ignore[no-untyped-def]
    """Write `array` (uint8) as an IDX file; gzip it when the name ends in .gz."""
    import gzip

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = (0x0800 + magic_dims).to_bytes(4, "big") + b"".join(
        int(side).to_bytes(4, "big") for side in array.shape
    )
    data = header + array.tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
