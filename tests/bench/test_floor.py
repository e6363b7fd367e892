"""bench/floor.py: the model under test, its arithmetic per image, and the in-process floor."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench.floor import describe_model, floor
from modelrepo import newest_spec
from tests.service.modelrepo import write_version

_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["cvae-mnist", "cvae-mnist-fast"])
def test_each_shipped_model_is_described_with_the_flops_of_its_training_configuration(
    name: str,
) -> None:
    pytest.importorskip("torch")
    from training.config import ModelConfig
    from training.describe import model_costs

    model = newest_spec(_ROOT / "models", name)
    cost = describe_model(model)
    config = ModelConfig(**model.document["training_config"]["model"])
    assert cost.flops_per_image == round(model_costs(config)["decoder_mflops_per_image"] * 1e6)
    assert cost.onnx == f"models/{model.name}/{model.version}/model.onnx"  # not a machine path
    assert cost.onnx_sha256 == hashlib.sha256(model.onnx_path.read_bytes()).hexdigest()


def test_a_model_without_a_training_configuration_is_measured_without_flops(
    tmp_path: Path,
) -> None:
    write_version(tmp_path, "1")
    model = newest_spec(tmp_path)
    cost = describe_model(model)
    assert cost.flops_per_image is None
    rates = floor(model, flops_per_image=None, min_seconds=0.01, thread_counts=(1,))
    assert {rate.batch for rate in rates} == {1, 32, 256, 1024}
    assert all(rate.images_per_s > 0 and rate.gflops_per_s is None for rate in rates)
