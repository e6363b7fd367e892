"""The work plan: a dataset cut into fixed chunks, each a pure function of (seed, chunk index).

Image `i` of the dataset has label `labels[i % len(labels)]` (labels interleaved, so every
prefix is balanced). Chunk `k` holds images [k·chunk_size, (k+1)·chunk_size) and is drawn by the
service with its own seed, `chunk_seed(seed, k)`. Any sharding and any resume therefore produce
the same bytes: only which process computes a chunk changes, never what it holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_PLAN_FORMAT = "cvae-generate-plan/1"


def chunk_seed(seed: int, chunk_index: int) -> int:
    """The seed of one chunk: numpy's SeedSequence spawned at `chunk_index`, as a uint64."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(chunk_index,))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


@dataclass(frozen=True)
class JobPlan:
    """Everything that determines the dataset's bytes."""

    labels: tuple[int, ...]
    per_label: int
    seed: int
    temperature: float
    chunk_size: int
    model_name: str
    model_version: str
    image_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("labels: at least one label is needed")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels: each label once, got {list(self.labels)}")
        if self.per_label < 1:
            raise ValueError(f"per_label must be >= 1, got {self.per_label}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")

    @property
    def num_images(self) -> int:
        return self.per_label * len(self.labels)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_images // self.chunk_size)

    def chunk_range(self, chunk_index: int) -> tuple[int, int]:
        start = chunk_index * self.chunk_size
        return start, min(start + self.chunk_size, self.num_images)

    def chunk_length(self, chunk_index: int) -> int:
        start, stop = self.chunk_range(chunk_index)
        return stop - start

    def labels_of(self, start: int, stop: int) -> np.ndarray:
        """int64 labels of images [start, stop)."""
        return np.asarray(self.labels, dtype=np.int64)[np.arange(start, stop) % len(self.labels)]

    def chunk_labels(self, chunk_index: int) -> np.ndarray:
        return self.labels_of(*self.chunk_range(chunk_index))

    def all_labels(self) -> np.ndarray:
        return self.labels_of(0, self.num_images)

    def chunk_seed(self, chunk_index: int) -> int:
        return chunk_seed(self.seed, chunk_index)

    def shard_chunks(self, shard_index: int, shard_count: int) -> list[int]:
        """The chunks one shard computes: every shard_count-th, starting at shard_index."""
        check_shard(shard_index, shard_count)
        return list(range(shard_index, self.num_chunks, shard_count))

    def counts(self) -> dict[str, int]:
        return {str(label): self.per_label for label in self.labels}

    def to_json(self) -> dict[str, Any]:
        return {"format": _PLAN_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobPlan:
        if data.get("format") != _PLAN_FORMAT:
            raise ValueError(f"not a {_PLAN_FORMAT} plan: format={data.get('format')!r}")
        fields = {key: value for key, value in data.items() if key != "format"}
        fields["labels"] = tuple(fields["labels"])
        fields["image_shape"] = tuple(fields["image_shape"])
        return cls(**fields)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"


def check_shard(shard_index: int, shard_count: int) -> None:
    if shard_count < 1:
        raise ValueError(f"shard count must be >= 1, got {shard_count}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard index must be in [0, {shard_count}), got {shard_index}")


def shard_from_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(index, count) from a Kubernetes Indexed Job: JOB_COMPLETION_INDEX and CVAE_SHARD_COUNT.

    Outside a Job both are absent and the answer is (0, 1): one shard, the whole dataset.
    """
    environ = os.environ if environ is None else environ
    try:
        index = int(environ.get("JOB_COMPLETION_INDEX", "0"))
        count = int(environ.get("CVAE_SHARD_COUNT", "1"))
    except ValueError as error:
        raise ValueError(
            f"JOB_COMPLETION_INDEX / CVAE_SHARD_COUNT must be integers: {error}"
        ) from None
    check_shard(index, count)
    return index, count
