"""A published model version (models/<name>/<version>/) as a numpy decode callable, via onnxruntime.

Lets the evaluator score exactly what the service serves, a quantized variant included.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

_LOGGER = logging.getLogger(__name__)


class ModelFolderError(ValueError):
    """A model folder without a readable model.json / model.onnx pair, or a mismatched hash."""


@dataclass
class OnnxDecoder:
    folder: Path
    description: dict[str, Any]
    session: ort.InferenceSession

    @classmethod
    def open(cls, folder: Path, *, threads: int = 2) -> OnnxDecoder:
        """Read model.json, check model.onnx against its sha256, start an onnxruntime session."""
        try:
            description = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            graph_bytes = (folder / "model.onnx").read_bytes()
        except (OSError, json.JSONDecodeError) as error:
            raise ModelFolderError(f"{folder} is not a model version folder: {error}") from error
        for key in ("latent_dim", "num_classes", "class_names", "inputs", "outputs"):
            if key not in description:
                raise ModelFolderError(f"{folder}/model.json lacks {key!r}")
        actual = hashlib.sha256(graph_bytes).hexdigest()
        if description.get("onnx_sha256") != actual:
            raise ModelFolderError(
                f"{folder}/model.onnx hashes to {actual}, model.json says "
                f"{description.get('onnx_sha256')}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            graph_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(folder=folder, description=description, session=session)

    @property
    def latent_dim(self) -> int:
        return int(self.description["latent_dim"])

    @property
    def num_classes(self) -> int:
        return int(self.description["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.description["class_names"]]

    def __call__(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """z float32 [N, latent_dim], labels int64 [N] -> images float32 [N, H, W]."""
        feeds = {
            self.description["inputs"]["latent"]: np.ascontiguousarray(z, dtype=np.float32),
            self.description["inputs"]["label"]: np.ascontiguousarray(labels, dtype=np.int64),
        }
        (images,) = self.session.run([self.description["outputs"]["image"]], feeds)
        return np.asarray(images, dtype=np.float32)
