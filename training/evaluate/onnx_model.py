"""A published model version (models/<name>/<version>/) as a numpy decode callable, via onnxruntime.

Lets the evaluator score exactly what the service serves, a quantized variant included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo import ModelSpec, read_spec


@dataclass
class OnnxDecoder:
    spec: ModelSpec
    session: ort.InferenceSession

    @classmethod
    def open(cls, folder: Path, *, threads: int = 2) -> OnnxDecoder:
        """Read and check the version folder (modelrepo.read_spec), start an onnxruntime session."""
        spec = read_spec(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(spec.onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(spec=spec, session=session)

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    def __call__(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """z float32 [N, latent_dim], labels int64 [N] -> images float32 [N, H, W]."""
        feeds = {
            self.spec.latent_input: np.ascontiguousarray(z, dtype=np.float32),
            self.spec.label_input: np.ascontiguousarray(labels, dtype=np.int64),
        }
        (images,) = self.session.run([self.spec.image_output], feeds)
        return np.asarray(images, dtype=np.float32)
