"""The model under test: the newest version in a model repository (docs/model-repository.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class ModelNotFoundError(FileNotFoundError):
    """No usable model version in the repository."""


@dataclass(frozen=True)
class ModelUnderTest:
    name: str
    version: str
    onnx_path: Path
    latent_dim: int
    num_classes: int
    image_shape: tuple[int, int]
    latent_input: str
    label_input: str
    image_output: str
    metrics: dict[str, Any]

    @property
    def repository(self) -> Path:
        return self.onnx_path.parent.parent.parent

    def inputs(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Decoder feeds for `batch` images: z ~ N(0, I) and labels cycling through the classes."""
        rng = np.random.default_rng(seed)
        return {
            self.latent_input: rng.standard_normal((batch, self.latent_dim), dtype=np.float32),
            self.label_input: np.arange(batch, dtype=np.int64) % self.num_classes,
        }


def _version_key(folder: Path) -> int:
    return int(folder.name)


def newest(repository: Path, name: str = "") -> ModelUnderTest:
    """The highest numbered version of model `name` (or of the only model) in `repository`."""
    if not repository.is_dir():
        raise ModelNotFoundError(
            f"no model repository at {repository}: train and export one with `make model`"
        )
    names = sorted(path for path in repository.iterdir() if path.is_dir())
    if name:
        names = [path for path in names if path.name == name]
    if len(names) != 1:
        found = ", ".join(path.name for path in names) or "none"
        raise ModelNotFoundError(f"expected one model in {repository} (found: {found})")
    versions = [
        path
        for path in names[0].iterdir()
        if path.name.isdigit()
        and (path / "model.onnx").is_file()
        and (path / "model.json").is_file()
    ]
    if not versions:
        raise ModelNotFoundError(f"no <version>/model.onnx + model.json under {names[0]}")
    folder = max(versions, key=_version_key)
    spec = json.loads((folder / "model.json").read_text())
    return ModelUnderTest(
        name=str(spec["name"]),
        version=str(spec["version"]),
        onnx_path=folder / "model.onnx",
        latent_dim=int(spec["latent_dim"]),
        num_classes=int(spec["num_classes"]),
        image_shape=(int(spec["image_shape"][0]), int(spec["image_shape"][1])),
        latent_input=str(spec["inputs"]["latent"]),
        label_input=str(spec["inputs"]["label"]),
        image_output=str(spec["outputs"]["image"]),
        metrics=dict(spec.get("metrics", {})),
    )
