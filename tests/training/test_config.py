"""training/config.py: defaults, TOML files, flags, and plain-data round trips."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.config import (
    ConfigError,
    ModelConfig,
    TrainConfig,
    add_config_flags,
    apply_flags,
    config_from_dict,
    config_to_dict,
    load_toml,
)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return parser.parse_args(argv)


def test_config_round_trips_through_plain_data() -> None:
    config = TrainConfig(model=ModelConfig(latent_dim=8, decoder_channels=(32, 16, 8)), epochs=3)
    values = config_to_dict(config)
    assert values["model"]["decoder_channels"] == [32, 16, 8]
    assert config_from_dict(values) == config


def test_toml_file_sets_training_and_model_fields(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("epochs = 4\nlr = 0.01\n[model]\nlatent_dim = 12\nencoder_channels = [8, 16]\n")
    config = load_toml(path)
    assert config.epochs == 4 and config.lr == 0.01
    assert config.model.latent_dim == 12 and config.model.encoder_channels == (8, 16)
    assert config.batch_size == TrainConfig().batch_size


def test_flags_override_the_file_and_leave_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("epochs = 4\nseed = 7\n")
    args = _parse(["--epochs", "9", "--latent-dim", "6", "--decoder-channels", "8,8,4"])
    config = apply_flags(load_toml(path), args)
    assert (config.epochs, config.seed) == (9, 7)
    assert config.model.latent_dim == 6 and config.model.decoder_channels == (8, 8, 4)


def test_unknown_keys_and_bad_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("epochz = 4\n")
    with pytest.raises(ConfigError, match="epochz"):
        load_toml(path)
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="sometimes")
    with pytest.raises(ConfigError, match="class name"):
        ModelConfig(num_classes=3)
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="compute_dtype"):
        TrainConfig(compute_dtype="float16")
    with pytest.raises(ConfigError, match="label_guidance_fit_epochs"):
        TrainConfig(label_guidance_fit_epochs=-1)


def test_the_shipped_training_configs_load_and_the_fast_variant_is_cheaper() -> None:
    from training.describe import model_costs

    folder = Path(__file__).resolve().parents[2] / "training" / "configs"
    configs = {path.stem: load_toml(path) for path in sorted(folder.glob("*.toml"))}
    assert "fast" in configs
    fast, default = model_costs(configs["fast"].model), model_costs(ModelConfig())
    assert fast["decoder_mflops_per_image"] < default["decoder_mflops_per_image"] / 5
