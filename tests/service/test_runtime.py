"""ModelRuntime: loads real ONNX, refuses graphs that disagree with model.json, rows independent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.errors import ModelLoadError
from service.options import runtime_options
from service.runtime import ModelRuntime, load_runtime
from service.settings import ServiceSettings
from tests.service.hostile import poisoned
from tests.service.modelrepo import write_version

_OPTIONS = runtime_options(ServiceSettings(intra_op_threads=1))


def test_runs_the_decoder(runtime: ModelRuntime) -> None:
    latents = np.zeros((3, 16), dtype=np.float32)
    images = runtime.run(latents, np.array([0, 1, 2], dtype=np.int64))
    assert images.shape == (3, 28, 28)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert not np.array_equal(images[0], images[1])  # the label matters


def test_rows_do_not_depend_on_the_rest_of_the_batch(runtime: ModelRuntime) -> None:
    rng = np.random.default_rng(1)
    latents = rng.standard_normal((50, 16), dtype=np.float32)
    labels = rng.integers(0, 10, 50).astype(np.int64)
    whole = runtime.run(latents, labels)
    for row in (0, 17, 49):
        alone = runtime.run(latents[row : row + 1], labels[row : row + 1])
        assert alone[0].tobytes() == whole[row].tobytes()
    assert runtime.batch_invariant


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        ("truncated_onnx", "onnxruntime cannot load it"),
        ("wrong_input_names", "graph inputs ['digit', 'latent_z'] differ from model.json"),
        ("wrong_output_shape", "warm-up output 'image' is float32[1, 784]"),
        ("sha_mismatch", "does not match onnx_sha256"),
    ],
)
def test_refuses_a_version_that_disagrees_with_model_json(
    tmp_path: Path, breakage: str, problem: str
) -> None:
    folder = write_version(tmp_path, "1", breakage=breakage)
    with pytest.raises(ModelLoadError) as raised:
        load_runtime(folder, _OPTIONS)
    assert str(folder / "model.onnx") in str(raised.value)
    assert problem in str(raised.value)


@pytest.mark.parametrize(("max_batch", "invariant"), [(37, True), (128, False)])
def test_batch_invariance_is_checked_up_to_max_batch(
    tmp_path: Path, max_batch: int, invariant: bool
) -> None:
    """A decoder whose rows change in batches above 40 rows passes a check of 37 rows; with
    --max-batch 128 the batcher would merge such batches, so warm-up must check 128 rows."""
    folder = poisoned("rows_above_40")(tmp_path, "1")
    options = runtime_options(ServiceSettings(intra_op_threads=1, max_batch=max_batch))
    assert load_runtime(folder, options).batch_invariant is invariant


def test_a_decoder_that_outputs_nan_for_one_label_is_refused(tmp_path: Path) -> None:
    folder = poisoned("nan_last_label")(tmp_path, "1")
    with pytest.raises(ModelLoadError) as raised:
        load_runtime(folder, _OPTIONS)
    assert str(folder / "model.onnx") in str(raised.value)
    assert "output holds NaN or Inf (labels [9])" in str(raised.value)
