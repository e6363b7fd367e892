"""int8 variants of the decoder with onnxruntime.quantization: dynamic, and static QDQ.

Static quantization needs activation ranges; the decoder's real inputs are z ~ N(0, I) and a
label, so calibration draws exactly those (no dataset needed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from bench.floor import session
from bench.model import random_feeds
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)


class _PriorReader(CalibrationDataReader):
    """Calibration batches drawn from the decoder's own input distribution."""

    def __init__(self, model: ModelSpec, batches: int, batch: int) -> None:
        self._feeds = iter(
            [random_feeds(model, batch, seed=1000 + index) for index in range(batches)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    note: str


def _preprocessed(model: ModelSpec, folder: Path) -> Path:
    """Shape inference and graph cleanup that quantization recommends; the original if it fails."""
    target = folder / "preprocessed.onnx"
    try:
        quant_pre_process(str(model.onnx_path), str(target), skip_symbolic_shape=False)
    except Exception as error:  # the quantizer's own pre-pass: its failure only costs quality
        _LOGGER.warning("quant_pre_process failed (%s); quantizing the model as is", error)
        return model.onnx_path
    return target


def build_variants(
    model: ModelSpec, folder: Path, *, calibration_batches: int = 8
) -> list[Variant]:
    """Write the int8 variants into `folder`; each that quantization refuses is skipped, logged."""
    folder.mkdir(parents=True, exist_ok=True)
    source = _preprocessed(model, folder)
    variants = []
    dynamic = folder / "int8-dynamic.onnx"
    try:
        quantize_dynamic(str(source), str(dynamic), weight_type=QuantType.QInt8)
        variants.append(
            Variant("int8-dynamic", dynamic, "weights int8, activations quantized per call")
        )
    except Exception as error:  # reported as a missing row, not a crash of the whole bench
        _LOGGER.warning("dynamic quantization failed: %s", error)
    static = folder / "int8-static-qdq.onnx"
    try:
        quantize_static(
            str(source),
            str(static),
            _PriorReader(model, calibration_batches, 128),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        variants.append(
            Variant("int8-static-qdq", static, "QDQ, per-channel int8 weights, uint8 activations")
        )
    except Exception as error:  # reported as a missing row, not a crash of the whole bench
        _LOGGER.warning("static quantization failed: %s", error)
    return variants


def max_pixel_error(model: ModelSpec, variant: Path, images: int = 512) -> float:
    """Largest |float32 - variant| pixel difference on the same prior draws."""
    feeds = random_feeds(model, images, seed=7)
    reference = session(model.onnx_path, threads=1).run([model.image_output], feeds)[0]
    candidate = session(variant, threads=1).run([model.image_output], feeds)[0]
    return float(np.abs(reference - candidate).max())
