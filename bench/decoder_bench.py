"""Part 1 of the bench: the decoder in process (the floor), its FLOPs, and int8 variants."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import flops, quality, quantize
from bench.floor import sweep
from bench.machine import repository_path
from modelrepo import ModelSpec

_LOGGER = logging.getLogger(__name__)
FLOOR_BATCHES = (1, 32, 256, 1024)


def describe_model(model: ModelSpec) -> dict[str, Any]:
    cost = flops.count_file(model.onnx_path)
    return {
        "name": model.name,
        "version": model.version,
        "onnx": repository_path(model.onnx_path),
        "onnx_sha256": hashlib.sha256(model.onnx_path.read_bytes()).hexdigest(),
        "latent_dim": model.latent_dim,
        "image_shape": list(model.image_shape),
        "macs_per_image": cost.macs_per_image,
        "flops_per_image": cost.flops_per_image,
        "layers": [
            {"name": layer.name, "op": layer.op_type, "macs": layer.macs} for layer in cost.layers
        ],
        "uncounted_layers": list(cost.uncounted),
        "metrics_in_model_json": model.document.get("metrics", {}),
    }


def floor(
    model: ModelSpec,
    *,
    flops_per_image: int,
    min_seconds: float,
    thread_counts: tuple[int, ...],
) -> list[dict[str, Any]]:
    """Batch sweep per thread count at full optimization, then each optimization level."""
    configurations: list[tuple[int, str, tuple[int, ...]]] = [
        (threads, "all", FLOOR_BATCHES) for threads in thread_counts
    ]
    configurations += [
        (max(thread_counts), level, (1, 256)) for level in ("disabled", "basic", "extended")
    ]
    rates = sweep(model, configurations, min_seconds=min_seconds, flops_per_image=flops_per_image)
    return [rate.as_dict() for rate in rates]


def int8_variants(
    model: ModelSpec,
    *,
    work: Path,
    flops_per_image: int,
    min_seconds: float,
    thread_counts: tuple[int, ...],
    quality_per_label: int,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Speed and quality of each int8 variant next to float32 (same draws, same judge)."""
    progress("quantizing")
    variants = quantize.build_variants(model, work / "quantized")
    section: dict[str, Any] = {"variants": []}
    judge, why_not = quality.load_judge(quality_per_label) if quality_per_label else (None, "")
    if judge is None:
        section["quality_unmeasured"] = why_not or "skipped (--quick)"
    reference = None
    if judge is not None:
        progress("scoring float32 with the evaluator")
        reference = judge.score(model, model.onnx_path)
        section["float32_quality"] = reference.as_dict()
    for variant in variants:
        progress(f"measuring {variant.name}")
        entry: dict[str, Any] = {
            "name": variant.name,
            "note": variant.note,
            "path": repository_path(variant.path),
            "max_pixel_error": quantize.max_pixel_error(model, variant.path),
            "rates": [
                rate.as_dict()
                for rate in sweep(
                    model,
                    [(threads, "all", (1, 256)) for threads in thread_counts],
                    min_seconds=min_seconds,
                    flops_per_image=flops_per_image,
                    onnx_path=variant.path,
                    variant=variant.name,
                )
            ],
        }
        if judge is not None and reference is not None:
            scored = judge.score(model, variant.path)
            entry["quality"] = scored.as_dict()
            entry["may_ship"] = quality.may_ship(reference, scored)
        section["variants"].append(entry)
    return section
