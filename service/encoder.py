"""The encoder Q(z|x,y) of a model version on onnxruntime: check, warm up, run.

A version ships one when its model.json holds an `"encoder"` graph (modelrepo reads it and
checks its sha256; docs/model-repository.md): `image` float32 [N, H, W] in [0, 1], `label`
int64 [N] -> `mean` and `log_variance` float32 [N, latent_dim]. A version without one has no
encoder (None); a broken one refuses the whole version (ModelLoadError naming the file), as a
broken decoder does.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from modelrepo import GraphSpec, ModelSpec
from service.errors import ModelLoadError
from service.runtime import RuntimeOptions, first_line_of, invariance_slices, open_session

_WARMUP_BATCHES = (1, 7)


class EncoderRuntime:
    """One loaded encoder. `run` returns mean and log-variance side by side, [N, 2 * latent_dim],
    so that the batcher handles it like the decoder (one array per row); `split` separates them.

    It is a different object from its version's decoder runtime, so the batcher never puts
    encoder and decoder rows in one onnxruntime call.
    """

    def __init__(self, model: ModelSpec, graph: GraphSpec, session: ort.InferenceSession) -> None:
        self.model = model
        self.graph = graph
        self.path = model.path_of(graph)
        self._session = session
        self._image, self._label = graph.inputs["image"], graph.inputs["label"]
        self._outputs = [graph.outputs["mean"], graph.outputs["log_variance"]]
        self.batch_invariant = True

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def run(self, images: np.ndarray, labels: np.ndarray, /) -> np.ndarray:
        """images float32 (N, H, W) in [0, 1], labels int64 (N,) -> float32 (N, 2 * latent_dim)."""
        mean, log_variance = self._session.run(
            self._outputs, {self._image: images, self._label: labels}
        )
        return np.concatenate([mean, log_variance], axis=1)

    def split(self, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log_variance), each (N, latent_dim), of what `run` returned."""
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

    def __repr__(self) -> str:
        return f"EncoderRuntime({self.model.name!r}, version={self.model.version!r})"


def load_encoder(model: ModelSpec, options: RuntimeOptions) -> EncoderRuntime | None:
    """Load and warm up the encoder of `model` (its file already checked by modelrepo)."""
    if model.encoder is None:
        return None
    path = model.path_of(model.encoder)
    session = open_session(path, options)
    _check_signature(model.encoder, path, session)
    encoder = EncoderRuntime(model, model.encoder, session)
    _warm_up(encoder, options.max_batch)
    return encoder


def _check_signature(graph: GraphSpec, path: object, session: ort.InferenceSession) -> None:
    inputs = {node.name: node.type for node in session.get_inputs()}
    outputs = {node.name: node.type for node in session.get_outputs()}
    expected = {graph.inputs["image"]: "tensor(float)", graph.inputs["label"]: "tensor(int64)"}
    if inputs != expected:
        raise ModelLoadError(
            f"{path}: graph inputs {sorted(inputs.items())} differ from model.json's "
            f"encoder inputs {sorted(expected.items())}"
        )
    for name in (graph.outputs["mean"], graph.outputs["log_variance"]):
        if outputs.get(name) != "tensor(float)":
            raise ModelLoadError(
                f"{path}: model.json's encoder output {name!r} is not a float output of "
                f"the graph (outputs: {sorted(outputs.items())})"
            )


def _warm_up(encoder: EncoderRuntime, max_batch: int) -> None:
    """Like the decoder's (service/runtime.py): odd batch sizes, every label, and `max_batch`
    random rows, each output of the right shape and finite; then the batch-invariance check."""
    model = encoder.model
    rng = np.random.default_rng(0)
    step = max(1, max_batch)
    batches = [np.arange(batch, dtype=np.int64) % model.num_classes for batch in _WARMUP_BATCHES]
    batches += [
        np.arange(start, min(start + step, model.num_classes), dtype=np.int64)
        for start in range(0, model.num_classes, step)
    ]
    for labels in batches:
        images = rng.random((len(labels), *model.image_shape), dtype=np.float32)
        _checked_run(encoder, images, labels)
    count = step
    images = rng.random((count, *model.image_shape), dtype=np.float32)
    labels = rng.permutation(np.arange(count) % model.num_classes).astype(np.int64)
    whole = _checked_run(encoder, images, labels)
    pieces = [encoder.run(images[a:b], labels[a:b]) for a, b in invariance_slices(count)]
    encoder.batch_invariant = bool(np.array_equal(np.concatenate(pieces), whole))


def _checked_run(encoder: EncoderRuntime, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    model = encoder.model
    batch = len(labels)
    try:
        stats = encoder.run(images, labels)
    except Exception as error:  # onnxruntime raises its own, undocumented exception types
        first_line = first_line_of(error)
        raise ModelLoadError(f"{encoder.path}: warm-up run failed ({first_line})") from None
    expected = (batch, 2 * model.latent_dim)
    if stats.shape != expected or stats.dtype != np.float32:
        shown = [batch, stats.shape[1] // 2] if stats.ndim == 2 else list(stats.shape)
        raise ModelLoadError(
            f"{encoder.path}: warm-up outputs are {stats.dtype}{shown} each, model.json "
            f"says float32{[batch, model.latent_dim]}"
        )
    if not np.all(np.isfinite(stats)):
        raise ModelLoadError(f"{encoder.path}: warm-up output holds NaN or Inf")
    return stats
