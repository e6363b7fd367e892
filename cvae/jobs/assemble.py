"""Turn complete chunk files into the final dataset plus its manifest, published by rename."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cvae.jobs.atomic import (
    OutputError,
    atomic_dir,
    describe_os_error,
    remove_stale_temporaries,
    sha256_file,
    temporary_sibling,
)
from cvae.jobs.plan import JobPlan
from cvae.jobs.readers import manifest_path
from cvae.jobs.workdir import WorkDir
from cvae.jobs.writers import WRITERS, write_npz

MANIFEST_FORMAT = "cvae-dataset/1"


def build_manifest(plan: JobPlan, dataset_format: str, files: dict[str, str]) -> dict[str, Any]:
    """What a dataset is and how to check it; no timestamps, so it is deterministic."""
    return {
        "format": MANIFEST_FORMAT,
        "dataset_format": dataset_format,
        "model": {"name": plan.model_name, "version": plan.model_version},
        "seed": plan.seed,
        "temperature": plan.temperature,
        "labels": list(plan.labels),
        "per_label": plan.per_label,
        "num_images": plan.num_images,
        "counts": plan.counts(),
        "image_shape": list(plan.image_shape),
        "chunk_size": plan.chunk_size,
        "chunk_seed": "numpy.random.SeedSequence(entropy=seed, spawn_key=(chunk_index,))",
        "files": dict(sorted(files.items())),
    }


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def _iter_chunks(plan: JobPlan, owners: dict[int, WorkDir]) -> Iterator[np.ndarray]:
    for chunk_index in range(plan.num_chunks):
        images = owners[chunk_index].load_chunk(chunk_index)
        start, stop = plan.chunk_range(chunk_index)
        if images.shape != (stop - start, *plan.image_shape) or images.dtype != np.uint8:
            raise ValueError(f"chunk {chunk_index} has shape {images.shape} {images.dtype}")
        yield images


def assemble(
    plan: JobPlan, owners: dict[int, WorkDir], out: Path, dataset_format: str
) -> dict[str, Any]:
    """Write the dataset and its manifest at `out`; on any failure nothing new is left there."""
    labels = plan.all_labels()
    chunks = _iter_chunks(plan, owners)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out.parent)
        if dataset_format == "npz":
            return _assemble_file(plan, chunks, labels, out)
        with atomic_dir(out) as folder:
            files = WRITERS[dataset_format](folder, chunks, labels)
            manifest = build_manifest(plan, dataset_format, files)
            (folder / "manifest.json").write_bytes(_manifest_bytes(manifest))
        return manifest
    except OSError as error:
        raise OutputError(describe_os_error(error, out)) from error


def _assemble_file(
    plan: JobPlan, chunks: Iterator[np.ndarray], labels: np.ndarray, out: Path
) -> dict[str, Any]:
    data_tmp = temporary_sibling(out)
    manifest_file = manifest_path(out, "npz")
    manifest_tmp = temporary_sibling(manifest_file)
    try:
        write_npz(data_tmp, chunks, labels)
        manifest = build_manifest(plan, "npz", {out.name: sha256_file(data_tmp)})
        manifest_tmp.write_bytes(_manifest_bytes(manifest))
        for path in (data_tmp, manifest_tmp):
            with open(path, "rb+") as stream:
                os.fsync(stream.fileno())
        os.replace(data_tmp, out)
        os.replace(manifest_tmp, manifest_file)
        return manifest
    finally:
        for path in (data_tmp, manifest_tmp):
            path.unlink(missing_ok=True)
