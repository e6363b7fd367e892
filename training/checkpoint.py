"""Checkpoints that rebuild their model alone: weights plus the configuration as plain data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from training.config import ConfigError, TrainConfig, config_from_dict, config_to_dict
from training.model import CVAE

_FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable CVAE checkpoint."""


def save_checkpoint(
    path: str | Path, model: CVAE, train_config: TrainConfig, extra: dict[str, Any] | None = None
) -> None:
    """Write atomically (a crash never leaves a half-written checkpoint behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": _FORMAT_VERSION,
        "train_config": config_to_dict(train_config),
        "model_state": model.state_dict(),
        "extra": extra or {},
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_checkpoint(path: str | Path) -> tuple[CVAE, TrainConfig, dict[str, Any]]:
    """(model in eval mode, its training config, the extra dict saved with it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format_version") != _FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a CVAE checkpoint (format {_FORMAT_VERSION})")
    values = dict(payload["train_config"])
    if isinstance(values.get("model"), dict) and "prior" not in values["model"]:
        # written before the prior was configurable: the model had the standard normal prior
        values["model"] = {**values["model"], "prior": "standard"}
    try:
        config = config_from_dict(values)
    except ConfigError as error:
        raise CheckpointError(f"{path} holds an invalid configuration: {error}") from error
    model = CVAE(config.model)
    model.load_state_dict(payload["model_state"])
    model.eval()
    return model, config, dict(payload["extra"])
