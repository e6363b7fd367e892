"""Loading a version's encoder: absent is fine (None), broken refuses the version by file name,
a good one is checked and runs on real onnxruntime; encoder and decoder rows never share a call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from service.batcher import DynamicBatcher
from service.errors import ModelLoadError
from service.options import batching_policy, runtime_options
from service.runtime import load_runtime, slice_scale
from service.settings import ServiceSettings
from tests.service.modelrepo import write_version

_OPTIONS = runtime_options(ServiceSettings(intra_op_threads=1))


def test_a_version_without_an_encoder_loads_with_none(tmp_path: Path) -> None:
    folder = write_version(tmp_path / "models", "1")
    assert load_runtime(folder, _OPTIONS).encoder is None


def test_a_good_encoder_loads_and_gives_mean_and_log_variance(tmp_path: Path) -> None:
    runtime = load_runtime(write_version(tmp_path / "models", "1", encoder=True), _OPTIONS)
    assert runtime.encoder is not None and runtime.encoder.batch_invariant
    images = np.zeros((3, 28, 28), dtype=np.float32)
    mean, log_variance = runtime.encoder.split(
        runtime.encoder.run(images, np.array([0, 1, 2], dtype=np.int64))
    )
    assert mean.shape == log_variance.shape == (3, 16)


def test_the_encoders_slices_take_the_decoders_slice_time(tmp_path: Path) -> None:
    """Both graphs' rows were timed at warm-up; the encoder's slice scale is their ratio."""
    runtime = load_runtime(write_version(tmp_path / "models", "1", encoder=True), _OPTIONS)
    assert runtime.encoder is not None
    assert runtime.row_seconds > 0 and runtime.encoder.row_seconds > 0
    assert runtime.slice_scale == 1.0
    assert runtime.encoder.slice_scale == slice_scale(
        runtime.row_seconds, runtime.encoder.row_seconds
    )


@pytest.mark.parametrize(
    ("decoder", "graph", "scale"),
    [(3.0, 1.0, 3.0), (1.0, 2.0, 0.5), (100.0, 1.0, 16.0), (1.0, 100.0, 1 / 16), (0.0, 1.0, 1.0)],
)
def test_slice_scale_is_the_timing_ratio_within_bounds(
    decoder: float, graph: float, scale: float
) -> None:
    assert slice_scale(decoder, graph) == scale


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("encoder_sha_mismatch", "encoder.onnx: sha256"),
        (
            "encoder_wrong_output_shape",
            "encoder.onnx: warm-up output 'mean' is float32[1, 17], model.json says float32[1, 16]",
        ),
        ("encoder_missing_file", "encoder.onnx: file is missing"),
    ],
)
def test_a_broken_encoder_refuses_the_version_naming_the_file(
    tmp_path: Path, breakage: str, message: str
) -> None:
    folder = write_version(tmp_path / "models", "1", breakage=breakage)
    with pytest.raises(ModelLoadError) as raised:
        load_runtime(folder, _OPTIONS)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.update(file="../model.onnx"), "encoder file '../model.onnx' is not a plain"),
        (lambda e: e["inputs"].update(image="pixels"), "encoder.onnx: graph inputs"),
        (lambda e: e["outputs"].update(mean="mu"), "encoder output 'mu' is not a float output"),
        (lambda e: e.pop("outputs"), "model.json: missing key 'outputs'"),
    ],
)
def test_a_wrong_encoder_entry_refuses_the_version(
    tmp_path: Path, edit: object, message: str
) -> None:
    folder = write_version(tmp_path / "models", "1", encoder=True)
    document = json.loads((folder / "model.json").read_text())
    edit(document["encoder"])  # type: ignore[operator]
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ModelLoadError) as raised:
        load_runtime(folder, _OPTIONS)
    assert message in str(raised.value)


class _Recording:
    """A real graph whose calls are recorded: which graph ran how many rows."""

    def __init__(self, graph: object, name: str, calls: list[tuple[str, int]]) -> None:
        self._graph = graph
        self._name = name
        self._calls = calls
        self.batch_invariant = True
        self.slice_scale = 1.0

    def run(self, rows: np.ndarray, labels: np.ndarray, /) -> np.ndarray:
        self._calls.append((self._name, len(labels)))
        return self._graph.run(rows, labels)  # type: ignore[attr-defined, no-any-return]


def test_encoder_and_decoder_rows_never_share_a_call(tmp_path: Path) -> None:
    runtime = load_runtime(write_version(tmp_path / "models", "1", encoder=True), _OPTIONS)
    calls: list[tuple[str, int]] = []
    decoder = _Recording(runtime, "decoder", calls)
    encoder = _Recording(runtime.encoder, "encoder", calls)
    images = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    latents = np.zeros((4, 16), dtype=np.float32)
    labels = np.arange(4, dtype=np.int64)

    async def scenario() -> list[np.ndarray]:
        settings = ServiceSettings(max_batch=64, max_delay_ms=10, decoder_slots=1)
        batcher = DynamicBatcher(batching_policy(settings))
        try:
            # The first call runs at once; the rest queue up behind it: 5 encoder requests,
            # then 6 decoder ones, then one more encoder request.
            work = [batcher.run(encoder, images, labels) for _ in range(6)]
            work += [batcher.run(decoder, latents, labels) for _ in range(6)]
            work.append(batcher.run(encoder, images, labels))
            return list(await asyncio.gather(*work))
        finally:
            batcher.close()

    results = asyncio.run(scenario())
    assert all(r.shape == (4, 32) for r in results[:6] + results[12:])
    assert all(r.shape == (4, 28, 28) for r in results[6:12])
    alone = runtime.encoder.run(images, labels)  # type: ignore[union-attr]
    assert all(np.array_equal(r, alone) for r in results[:6])
    # Merged as far as the queue order allows, and never across the two graphs.
    assert calls == [("encoder", 4), ("encoder", 20), ("decoder", 24), ("encoder", 4)]
