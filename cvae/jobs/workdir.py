"""The work folder of a job or shard: its plan and one file per completed chunk.

A chunk file appears (by rename) only when the chunk is complete, so after a kill the folder
holds whole chunks only; a re-run computes the missing ones. `shard.json` marks a finished shard.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cvae.jobs.atomic import (
    OutputError,
    atomic_file,
    remove_stale_temporaries,
    sha256_file,
    write_bytes_atomic,
)
from cvae.jobs.plan import JobPlan

_PLAN_NAME = "plan.json"
_SHARD_NAME = "shard.json"
_CHUNKS = "chunks"


class WorkDir:
    """Plan and chunk files under one folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chunks_path = path / _CHUNKS

    def chunk_path(self, chunk_index: int) -> Path:
        return self.chunks_path / f"chunk-{chunk_index:06d}.npy"

    def exists(self) -> bool:
        return (self.path / _PLAN_NAME).is_file()

    def create(self) -> None:
        """Make the folders and clear temporaries of a killed run (raises OutputError)."""
        try:
            self.chunks_path.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.chunks_path)
            remove_stale_temporaries(self.path)
        except OSError as error:
            raise OutputError(f"cannot create work folder {self.path}: {error.strerror}") from error

    def load_plan(self) -> JobPlan | None:
        plan_file = self.path / _PLAN_NAME
        if not plan_file.is_file():
            return None
        return JobPlan.from_json(json.loads(plan_file.read_text()))

    def save_plan(self, plan: JobPlan) -> None:
        write_bytes_atomic(self.path / _PLAN_NAME, plan.dumps().encode())

    def completed(self) -> set[int]:
        if not self.chunks_path.is_dir():
            return set()
        return {int(path.stem.split("-")[1]) for path in self.chunks_path.glob("chunk-*.npy")}

    def save_chunk(self, chunk_index: int, images: np.ndarray) -> None:
        with atomic_file(self.chunk_path(chunk_index)) as stream:
            np.save(stream, np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)

    def load_chunk(self, chunk_index: int) -> np.ndarray:
        return np.asarray(np.load(self.chunk_path(chunk_index), allow_pickle=False))

    def write_shard_record(
        self, plan: JobPlan, shard_index: int, shard_count: int, dataset_format: str
    ) -> None:
        chunks = plan.shard_chunks(shard_index, shard_count)
        record = {
            "shard_index": shard_index,
            "shard_count": shard_count,
            "format": dataset_format,
            "chunks": {str(k): sha256_file(self.chunk_path(k)) for k in chunks},
        }
        write_bytes_atomic(self.path / _SHARD_NAME, _dumps(record))

    def read_shard_record(self) -> dict[str, Any] | None:
        shard_file = self.path / _SHARD_NAME
        if not shard_file.is_file():
            return None
        return dict(json.loads(shard_file.read_text()))


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def adopt_plan(work: WorkDir, requested: JobPlan, pinned_version: str | None) -> JobPlan:
    """The plan to run: the requested one, or the one on disk when this resumes the same job.

    A resumed job keeps the model version it started with (unless another is pinned), so a
    new version on the server never mixes into a half-made dataset.
    """
    existing = work.load_plan()
    if existing is None:
        work.save_plan(requested)
        return requested
    mismatches = [
        name
        for name in ("labels", "per_label", "seed", "temperature", "chunk_size")
        if getattr(existing, name) != getattr(requested, name)
    ]
    if pinned_version and pinned_version != existing.model_version:
        mismatches.append("model_version")
    if mismatches:
        raise OutputError(
            f"{work.path} holds a different job (differs in {', '.join(mismatches)}); "
            "delete it or choose another --out"
        )
    return existing


def chunk_sources(works: Iterable[WorkDir], plan: JobPlan) -> dict[int, WorkDir]:
    """Which folder holds each chunk; every chunk exactly once, or ValueError."""
    owner: dict[int, WorkDir] = {}
    for work in works:
        for chunk_index in work.completed():
            if chunk_index in owner:
                raise ValueError(
                    f"chunk {chunk_index} is in both {owner[chunk_index].path} and {work.path}"
                )
            owner[chunk_index] = work
    missing = sorted(set(range(plan.num_chunks)) - owner.keys())
    if missing:
        raise ValueError(f"{len(missing)} chunks missing (first: {missing[:5]})")
    extra = sorted(owner.keys() - set(range(plan.num_chunks)))
    if extra:
        raise ValueError(f"chunks outside the plan: {extra[:5]}")
    return owner
