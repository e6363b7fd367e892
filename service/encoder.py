"""The image-side graphs of a model version on onnxruntime: check, warm up, run.

- The encoder Q(z|x,y), when model.json holds an `"encoder"` graph: `image` float32
  [N, H, W] in [0, 1], `label` int64 [N] -> `mean` and `log_variance` float32 [N, latent_dim].
- The posterior sampler, when it also holds a `"posterior"` graph (versions with a flow prior):
  `image`, `label` and `noise` float32 [N, latent_dim] -> `latent` float32 [N, latent_dim], a
  sample of Q carried exactly into the decoder's latent space, and `log_density` float32 [N],
  its log density there. Score's importance weights use it (service/encoding.py).

modelrepo reads both and checks their sha256 (docs/model-repository.md). A version without one
has none (None); a broken one refuses the whole version (ModelLoadError naming the file), as a
broken decoder does.

Each runtime takes one float32 array of rows and the labels, as the decoder does, so that the
batcher handles all three alike; each is its own object, so the batcher never puts rows of two
graphs in one onnxruntime call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar, TypeVar

import numpy as np
import onnxruntime as ort

from modelrepo import GraphSpec, ModelSpec
from service.errors import ModelLoadError
from service.runtime import RuntimeOptions, first_line_of, invariance_slices, open_session

_WARMUP_BATCHES = (1, 7)
_FLOAT, _INT64 = "tensor(float)", "tensor(int64)"


class _ImageGraphRuntime:
    """One loaded graph of image rows: `run(rows, labels)` -> float32 (N, output_columns)."""

    kind = ""
    input_types: ClassVar[Mapping[str, str]] = {}  # input role -> onnxruntime type
    output_roles: tuple[str, ...] = ()

    def __init__(self, model: ModelSpec, graph: GraphSpec, session: ort.InferenceSession) -> None:
        self.model = model
        self.graph = graph
        self.path = model.path_of(graph)
        self._session = session
        self._outputs = [graph.outputs[role] for role in self.output_roles]
        self.batch_invariant = True
        self.slice_scale = 1.0  # set by service.runtime.load_runtime from the warm-up timings
        self.row_seconds = 0.0

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def feeds(self, rows: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def output_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """The shape of each output (in output_roles order) for `batch` rows."""
        return [(batch, self.latent_dim)] * len(self.output_roles)

    def outputs(self, rows: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
        return list(self._session.run(self._outputs, self.feeds(rows, labels)))

    def run(self, rows: np.ndarray, labels: np.ndarray, /) -> np.ndarray:
        """The outputs side by side, float32 (N, columns); `split` separates them."""
        return np.concatenate([out.reshape(len(rows), -1) for out in self.outputs(rows, labels)], 1)

    def random_rows(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.random((count, *self.model.image_shape), dtype=np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r}, version={self.model.version!r})"


class EncoderRuntime(_ImageGraphRuntime):
    """The encoder. `run` returns mean and log-variance side by side, [N, 2 * latent_dim], so
    that the batcher handles it like the decoder (one array per row); `split` separates them."""

    kind = "encoder"
    input_types: ClassVar[Mapping[str, str]] = {"image": _FLOAT, "label": _INT64}
    output_roles = ("mean", "log_variance")

    def feeds(self, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """images float32 (N, H, W) in [0, 1], labels int64 (N,)."""
        return {self.graph.inputs["image"]: images, self.graph.inputs["label"]: labels}

    def split(self, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log_variance), each (N, latent_dim), of what `run` returned."""
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]


class PosteriorRuntime(_ImageGraphRuntime):
    """The posterior sampler. A row is an image and its noise, packed by `pack` into one
    float32 row of H * W + latent_dim values; `run` returns latent and log-density side by
    side, [N, latent_dim + 1]; `split` separates them."""

    kind = "posterior"
    input_types: ClassVar[Mapping[str, str]] = {"image": _FLOAT, "label": _INT64, "noise": _FLOAT}
    output_roles = ("latent", "log_density")

    def output_shapes(self, batch: int) -> list[tuple[int, ...]]:
        return [(batch, self.latent_dim), (batch,)]

    def pack(self, images: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """images (N, H, W), noise (N, latent_dim) -> rows float32 (N, H * W + latent_dim)."""
        flat = images.reshape(len(images), -1)
        return np.concatenate([flat, noise], axis=1).astype(np.float32, copy=False)

    def feeds(self, rows: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = rows.shape[1] - self.latent_dim
        images = np.ascontiguousarray(rows[:, :pixels]).reshape(len(rows), *self.model.image_shape)
        return {
            self.graph.inputs["image"]: images,
            self.graph.inputs["label"]: labels,
            self.graph.inputs["noise"]: np.ascontiguousarray(rows[:, pixels:]),
        }

    def split(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latent (N, latent_dim), log_density (N,)) of what `run` returned."""
        return out[:, : self.latent_dim], out[:, self.latent_dim]

    def random_rows(self, count: int, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((count, self.latent_dim), dtype=np.float32)
        return self.pack(super().random_rows(count, rng), noise)


_Runtime = TypeVar("_Runtime", bound=_ImageGraphRuntime)


def load_encoder(model: ModelSpec, options: RuntimeOptions) -> EncoderRuntime | None:
    """Load and warm up the encoder of `model` (its file already checked by modelrepo)."""
    if model.encoder is None:
        return None
    return _load(EncoderRuntime, model, model.encoder, options)


def load_posterior(model: ModelSpec, options: RuntimeOptions) -> PosteriorRuntime | None:
    """Load and warm up the posterior sampler of `model`, when it ships one."""
    if model.posterior is None:
        return None
    return _load(PosteriorRuntime, model, model.posterior, options)


def _load(
    kind: type[_Runtime], model: ModelSpec, graph: GraphSpec, options: RuntimeOptions
) -> _Runtime:
    path = model.path_of(graph)
    session = open_session(path, options)
    _check_signature(kind, graph, path, session)
    runtime = kind(model, graph, session)
    _warm_up(runtime, options.max_batch)
    return runtime


def _check_signature(
    kind: type[_ImageGraphRuntime], graph: GraphSpec, path: object, session: ort.InferenceSession
) -> None:
    inputs = {node.name: node.type for node in session.get_inputs()}
    outputs = {node.name: node.type for node in session.get_outputs()}
    expected = {graph.inputs[role]: dtype for role, dtype in kind.input_types.items()}
    if inputs != expected:
        raise ModelLoadError(
            f"{path}: graph inputs {sorted(inputs.items())} differ from model.json's "
            f"{kind.kind} inputs {sorted(expected.items())}"
        )
    for role in kind.output_roles:
        name = graph.outputs[role]
        if outputs.get(name) != _FLOAT:
            raise ModelLoadError(
                f"{path}: model.json's {kind.kind} output {name!r} is not a float output of "
                f"the graph (outputs: {sorted(outputs.items())})"
            )


def _warm_up(runtime: _ImageGraphRuntime, max_batch: int) -> None:
    """Like the decoder's (service/runtime.py): odd batch sizes, every label, and `max_batch`
    random rows, each output of the right shape and finite; then the batch-invariance check."""
    model = runtime.model
    rng = np.random.default_rng(0)
    step = max(1, max_batch)
    batches = [np.arange(batch, dtype=np.int64) % model.num_classes for batch in _WARMUP_BATCHES]
    batches += [
        np.arange(start, min(start + step, model.num_classes), dtype=np.int64)
        for start in range(0, model.num_classes, step)
    ]
    for labels in batches:
        _checked_run(runtime, runtime.random_rows(len(labels), rng), labels)
    count = step
    rows = runtime.random_rows(count, rng)
    labels = rng.permutation(np.arange(count) % model.num_classes).astype(np.int64)
    started = time.perf_counter()
    whole = _checked_run(runtime, rows, labels)
    runtime.row_seconds = (time.perf_counter() - started) / count
    pieces = [runtime.run(rows[a:b], labels[a:b]) for a, b in invariance_slices(count)]
    runtime.batch_invariant = bool(np.array_equal(np.concatenate(pieces), whole))


def _checked_run(runtime: _ImageGraphRuntime, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    try:
        outputs = runtime.outputs(rows, labels)
    except Exception as error:  # onnxruntime raises its own, undocumented exception types
        first_line = first_line_of(error)
        raise ModelLoadError(f"{runtime.path}: warm-up run failed ({first_line})") from None
    expected = runtime.output_shapes(len(labels))
    for role, out, shape in zip(runtime.output_roles, outputs, expected, strict=True):
        if out.shape != shape or out.dtype != np.float32:
            raise ModelLoadError(
                f"{runtime.path}: warm-up output {role!r} is {out.dtype}{list(out.shape)}, "
                f"model.json says float32{list(shape)}"
            )
        if not np.all(np.isfinite(out)):
            raise ModelLoadError(f"{runtime.path}: warm-up output {role!r} holds NaN or Inf")
    return np.concatenate([out.reshape(len(labels), -1) for out in outputs], axis=1)
