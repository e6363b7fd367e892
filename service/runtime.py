"""The decoder on onnxruntime: load one version, check it against model.json, warm up, run."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from modelrepo import ModelSpec, read_spec
from service.errors import ModelLoadError
from service.priority import call_in_lowered_thread

if TYPE_CHECKING:
    from service.encoder import EncoderRuntime, PosteriorRuntime

_LOGGER = logging.getLogger(__name__)
_WARMUP_BATCHES = (1, 7)  # odd sizes: catch a graph that only works for one batch size


@dataclass(frozen=True)
class RuntimeOptions:
    """How onnxruntime runs the decoder (service.options.runtime_options builds it)."""

    intra_op_threads: int  # threads per decoder call (ServiceSettings.intra_op_threads, resolved)
    niceness: int  # added to onnxruntime's worker threads (ServiceSettings.decoder_niceness)
    max_batch: int  # the largest batch the batcher runs: warm-up checks rows up to it
    max_model_bytes: int  # a version's files together (ServiceSettings.max_model_bytes)
    # Busy-waiting worker threads steal the CPU the gRPC event loop needs; keep them asleep.
    allow_spinning: bool = False


class ModelRuntime:
    """One loaded, checked and warmed-up model version.

    `run` is safe to call from several threads at once (onnxruntime sessions are).
    """

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession) -> None:
        self.spec = spec
        self._session = session
        self._output_names = [spec.image_output]
        self.load_seconds = 0.0
        # Whether a row's image is the same alone or inside any batch (checked at warm-up);
        # when it is not, the batcher never merges requests, so results stay reproducible.
        self.batch_invariant = True
        self.slice_scale = 1.0  # the batcher's slices are counted in the decoder's rows
        # Seconds per row of the warm-up's largest batch: what the other graphs' slices match.
        self.row_seconds = 0.0
        # Q(z|x,y) when the version ships one (model.json "encoder"; service/encoder.py).
        self.encoder: EncoderRuntime | None = None
        # Q's exact sampler in the decoder's space, beside a flow prior's encoder ("posterior").
        self.posterior: PosteriorRuntime | None = None

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """latents float32 (N, latent_dim), labels int64 (N,) -> images float32 (N, H, W)."""
        feeds = {self.spec.latent_input: latents, self.spec.label_input: labels}
        (images,) = self._session.run(self._output_names, feeds)
        return images

    def __repr__(self) -> str:
        return f"ModelRuntime({self.spec.name!r}, version={self.spec.version!r})"


def load_runtime(folder: Path, options: RuntimeOptions) -> ModelRuntime:
    """Read, verify, load and warm up the version in `folder`, or raise ModelLoadError."""
    started = time.perf_counter()
    spec = read_spec(folder, options.max_model_bytes)
    session = open_session(spec.onnx_path, options)
    _check_signature(spec, session)
    runtime = ModelRuntime(spec, session)
    _warm_up(runtime, options.max_batch)
    from service.encoder import load_encoder, load_posterior  # they build on this module

    runtime.encoder = load_encoder(spec, options)
    runtime.posterior = load_posterior(spec, options)
    for graph in (runtime.encoder, runtime.posterior):
        if graph is not None:
            graph.slice_scale = slice_scale(runtime.row_seconds, graph.row_seconds)
    runtime.load_seconds = time.perf_counter() - started
    _LOGGER.debug("loaded %s version %s in %.3f s", spec.name, spec.version, runtime.load_seconds)
    return runtime


def open_session(path: Path, options: RuntimeOptions) -> ort.InferenceSession:
    """An onnxruntime session on the CPU for the graph at `path`, or ModelLoadError."""
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.intra_op_threads
    session_options.inter_op_num_threads = 1
    session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_options.log_severity_level = 3  # errors only; our own logs say what happened
    spinning = "1" if options.allow_spinning else "0"
    session_options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    try:
        # The intra-op pool is created here and inherits the creating thread's priority.
        return call_in_lowered_thread(
            options.niceness,
            lambda: ort.InferenceSession(
                str(path),
                sess_options=session_options,
                providers=["CPUExecutionProvider"],
            ),
        )
    except Exception as error:  # onnxruntime raises its own, undocumented exception types
        first_line = first_line_of(error)
        raise ModelLoadError(f"{path}: onnxruntime cannot load it ({first_line})") from None


def _check_signature(spec: ModelSpec, session: ort.InferenceSession) -> None:
    where = spec.onnx_path
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = {node.name: node for node in session.get_outputs()}
    expected_inputs = {spec.latent_input: "tensor(float)", spec.label_input: "tensor(int64)"}
    if set(inputs) != set(expected_inputs):
        raise ModelLoadError(
            f"{where}: graph inputs {sorted(inputs)} differ from model.json inputs "
            f"{sorted(expected_inputs)}"
        )
    for name, dtype in expected_inputs.items():
        if inputs[name].type != dtype:
            raise ModelLoadError(f"{where}: input {name!r} is {inputs[name].type}, not {dtype}")
    latent_shape = inputs[spec.latent_input].shape
    declared = latent_shape[-1] if latent_shape else None
    if isinstance(declared, int) and declared != spec.latent_dim:
        raise ModelLoadError(
            f"{where}: input {spec.latent_input!r} has {declared} columns, model.json says "
            f"latent_dim {spec.latent_dim}"
        )
    if spec.image_output not in outputs:
        raise ModelLoadError(
            f"{where}: graph outputs {sorted(outputs)} lack model.json output {spec.image_output!r}"
        )
    if outputs[spec.image_output].type != "tensor(float)":
        raise ModelLoadError(
            f"{where}: output {spec.image_output!r} is {outputs[spec.image_output].type}, "
            "not tensor(float)"
        )


def _warm_up(runtime: ModelRuntime, max_batch: int) -> None:
    """Odd batch sizes, then every label, then batches of up to `max_batch` random rows: each
    output must have model.json's shape and be finite, so a model that fails for one label or
    one batch size is refused here instead of answering calls with NaN."""
    spec = runtime.spec
    for batch in _WARMUP_BATCHES:
        latents = np.zeros((batch, spec.latent_dim), dtype=np.float32)
        labels = np.arange(batch, dtype=np.int64) % spec.num_classes
        _checked_run(runtime, latents, labels, "warm-up")
    step = max(1, max_batch)
    for start in range(0, spec.num_classes, step):
        labels = np.arange(start, min(start + step, spec.num_classes), dtype=np.int64)
        latents = np.zeros((len(labels), spec.latent_dim), dtype=np.float32)
        _checked_run(runtime, latents, labels, f"warm-up of labels {start}-{labels[-1]}")
    runtime.batch_invariant = _rows_independent_of_batch(runtime, max_batch)
    if not runtime.batch_invariant:
        _LOGGER.warning(
            "%s: a row's output depends on the rows batched with it; requests of this version "
            "will not be merged by the batcher (slower, but reproducible)",
            spec.onnx_path,
        )


def _checked_run(
    runtime: ModelRuntime, latents: np.ndarray, labels: np.ndarray, what: str
) -> np.ndarray:
    spec = runtime.spec
    try:
        images = runtime.run(latents, labels)
    except Exception as error:  # a graph that loads but cannot run, e.g. wrong shapes inside
        first_line = first_line_of(error)
        raise ModelLoadError(f"{spec.onnx_path}: {what} run failed ({first_line})") from None
    expected = (len(labels), *spec.image_shape)
    if images.shape != expected or images.dtype != np.float32:
        raise ModelLoadError(
            f"{spec.onnx_path}: {what} output {spec.image_output!r} is "
            f"{images.dtype}{list(images.shape)}, model.json says float32{list(expected)}"
        )
    if not np.all(np.isfinite(images)):
        bad = sorted({int(label) for label in labels[~np.isfinite(images).all(axis=(1, 2))]})
        raise ModelLoadError(
            f"{spec.onnx_path}: {what} output holds NaN or Inf (labels {bad[:10]})"
        )
    return images


def invariance_slices(rows: int) -> list[tuple[int, int]]:
    """Where a batch of `rows` is cut to compare it with its pieces: 1 row, 3 rows, the rest."""
    cuts = sorted({0, min(1, rows), min(4, rows), rows})
    return list(itertools.pairwise(cuts))


def _rows_independent_of_batch(runtime: ModelRuntime, max_batch: int) -> bool:
    """Decode `max_batch` random rows (the largest batch the batcher runs) as one batch, in odd
    slices and one by one: all bytes must agree."""
    spec = runtime.spec
    rng = np.random.default_rng(0)
    count = max(1, max_batch)
    latents = rng.standard_normal((count, spec.latent_dim), dtype=np.float32)
    labels = rng.permutation(np.arange(count) % spec.num_classes).astype(np.int64)
    started = time.perf_counter()
    whole = _checked_run(runtime, latents, labels, f"warm-up of {count} random rows")
    runtime.row_seconds = (time.perf_counter() - started) / count
    pieces = [runtime.run(latents[a:b], labels[a:b]) for a, b in invariance_slices(count)]
    return np.array_equal(np.concatenate(pieces), whole)


_MAX_SLICE_SCALE = 16.0


def slice_scale(decoder_row_seconds: float, graph_row_seconds: float) -> float:
    """How many rows of a graph take as long as one decoder row (warm-up timings), within
    [1/16, 16] so that one noisy timing cannot make slices absurd; 1 when either is unknown."""
    if decoder_row_seconds <= 0 or graph_row_seconds <= 0:
        return 1.0
    ratio = decoder_row_seconds / graph_row_seconds
    return min(_MAX_SLICE_SCALE, max(1 / _MAX_SLICE_SCALE, ratio))


def first_line_of(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)
