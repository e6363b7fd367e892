"""The decoder on onnxruntime: load one version, check it against model.json, warm up, run."""

from __future__ import annotations

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
    from service.encoder import EncoderRuntime

_LOGGER = logging.getLogger(__name__)
_WARMUP_BATCHES = (1, 7)  # odd sizes: catch a graph that only works for one batch size
_INVARIANCE_ROWS = 37


@dataclass(frozen=True)
class RuntimeOptions:
    """How onnxruntime runs the decoder (service.options.runtime_options builds it)."""

    intra_op_threads: int  # threads per decoder call (ServiceSettings.intra_op_threads, resolved)
    niceness: int  # added to onnxruntime's worker threads (ServiceSettings.decoder_niceness)
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
        # Q(z|x,y) when the version ships one (model.json "encoder"; service/encoder.py).
        self.encoder: EncoderRuntime | None = None

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
    spec = read_spec(folder)
    session = open_session(spec.onnx_path, options)
    _check_signature(spec, session)
    runtime = ModelRuntime(spec, session)
    _warm_up(runtime)
    from service.encoder import load_encoder  # it builds on this module

    runtime.encoder = load_encoder(spec, options)
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
    if spec.image_output not in outputs:
        raise ModelLoadError(
            f"{where}: graph outputs {sorted(outputs)} lack model.json output {spec.image_output!r}"
        )
    if outputs[spec.image_output].type != "tensor(float)":
        raise ModelLoadError(
            f"{where}: output {spec.image_output!r} is {outputs[spec.image_output].type}, "
            "not tensor(float)"
        )


def _warm_up(runtime: ModelRuntime) -> None:
    spec = runtime.spec
    for batch in _WARMUP_BATCHES:
        latents = np.zeros((batch, spec.latent_dim), dtype=np.float32)
        labels = np.arange(batch, dtype=np.int64) % spec.num_classes
        try:
            images = runtime.run(latents, labels)
        except Exception as error:  # a graph that loads but cannot run, e.g. wrong shapes inside
            first_line = first_line_of(error)
            raise ModelLoadError(f"{spec.onnx_path}: warm-up run failed ({first_line})") from None
        expected = (batch, *spec.image_shape)
        if images.shape != expected or images.dtype != np.float32:
            raise ModelLoadError(
                f"{spec.onnx_path}: warm-up output {spec.image_output!r} is "
                f"{images.dtype}{list(images.shape)}, model.json says float32{list(expected)}"
            )
        if not np.all(np.isfinite(images)):
            raise ModelLoadError(f"{spec.onnx_path}: warm-up output holds NaN or Inf")
    runtime.batch_invariant = _rows_independent_of_batch(runtime)
    if not runtime.batch_invariant:
        _LOGGER.warning(
            "%s: a row's output depends on the rows batched with it; requests of this version "
            "will not be merged by the batcher (slower, but reproducible)",
            spec.onnx_path,
        )


def _rows_independent_of_batch(runtime: ModelRuntime) -> bool:
    """Decode random rows as one batch, in odd slices and one by one: all bytes must agree."""
    spec = runtime.spec
    rng = np.random.default_rng(0)
    count = _INVARIANCE_ROWS
    latents = rng.standard_normal((count, spec.latent_dim), dtype=np.float32)
    labels = rng.integers(0, spec.num_classes, count).astype(np.int64)
    whole = runtime.run(latents, labels)
    pieces = [runtime.run(latents[a:b], labels[a:b]) for a, b in ((0, 1), (1, 4), (4, count))]
    return np.array_equal(np.concatenate(pieces), whole)


def first_line_of(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)
