"""The shipped model repository (models/, from `make model`) serves as the contract says: each
version loads and checks out against its model.json, rows do not depend on their batch, and the
server answers with exactly the bytes in-process onnxruntime computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cvae.v1 import generator_pb2 as pb
from modelrepo import ModelRepository, read_spec
from service.codec import to_uint8
from service.options import runtime_options
from service.runtime import load_runtime
from service.sampler import LatentSampler
from service.settings import ServiceSettings
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)
_SHIPPED = Path(__file__).resolve().parents[2] / "models"


def test_every_shipped_version_loads_and_is_batch_invariant() -> None:
    versions = ModelRepository(_SHIPPED).versions()
    assert versions, f"{_SHIPPED} holds no model version"
    for folder in versions:
        for threads in (1, 2):
            runtime = load_runtime(
                folder.path, runtime_options(ServiceSettings(intra_op_threads=threads))
            )
            assert runtime.batch_invariant, (folder.path, threads)


def test_the_server_answers_the_bytes_onnxruntime_computes() -> None:
    newest = ModelRepository(_SHIPPED).newest()
    spec = read_spec(newest.path)
    session = ort.InferenceSession(str(newest.path / "model.onnx"))
    with ServerProcess(_SHIPPED, metrics=False) as server:
        info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        assert info.version == newest.version
        futures = []
        for seed in range(24):
            labels = [(seed + k) % info.num_classes for k in range(1 + seed % 5)]
            request = pb.GenerateRequest(labels=labels, seed=seed, temperature=0.9)
            futures.append((seed, labels, server.stub.Generate.future(request, timeout=60)))
        for seed, labels, future in futures:  # sent together: merged by the batcher
            latents = LatentSampler(info.latent_dim, seed, 0.9).take(len(labels))
            feeds = {spec.latent_input: latents, spec.label_input: np.array(labels, np.int64)}
            (images,) = session.run([spec.image_output], feeds)
            assert future.result().images.data == to_uint8(images).tobytes()
