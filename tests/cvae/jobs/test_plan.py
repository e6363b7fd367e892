"""The work plan: chunks, seeds, labels and shards are pure functions of the job."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvae.jobs.plan import JobPlan, chunk_seed, shard_from_environment


def _plan(labels: tuple[int, ...] = (0, 3, 7), per_label: int = 10, chunk_size: int = 4) -> JobPlan:
    return JobPlan(
        labels=labels,
        per_label=per_label,
        seed=42,
        temperature=1.0,
        chunk_size=chunk_size,
        model_name="m",
        model_version="1",
        image_shape=(28, 28),
    )


def test_labels_are_interleaved_and_counts_exact() -> None:
    plan = _plan()
    labels = plan.all_labels()
    assert labels.dtype == np.int64
    assert labels[:6].tolist() == [0, 3, 7, 0, 3, 7]
    assert {
        int(v): int(c) for v, c in zip(*np.unique(labels, return_counts=True), strict=True)
    } == {
        0: 10,
        3: 10,
        7: 10,
    }


def test_chunks_tile_the_dataset_and_the_last_is_short() -> None:
    plan = _plan()
    assert plan.num_chunks == 8  # 30 images in chunks of 4
    assert plan.chunk_range(7) == (28, 30)
    joined = np.concatenate([plan.chunk_labels(k) for k in range(plan.num_chunks)])
    assert np.array_equal(joined, plan.all_labels())


def test_chunk_seeds_are_stable_and_distinct() -> None:
    seeds = [chunk_seed(42, k) for k in range(100)]
    assert len(set(seeds)) == 100
    assert seeds == [chunk_seed(42, k) for k in range(100)]
    assert chunk_seed(43, 0) != chunk_seed(42, 0)
    assert all(0 <= seed < 2**64 for seed in seeds)


@given(
    num_chunks=st.integers(1, 60),
    shard_count=st.integers(1, 12),
)
def test_shards_are_disjoint_and_cover_every_chunk(num_chunks: int, shard_count: int) -> None:
    plan = _plan(labels=(1,), per_label=num_chunks, chunk_size=1)
    parts = [plan.shard_chunks(i, shard_count) for i in range(shard_count)]
    flat = [k for part in parts for k in part]
    assert sorted(flat) == list(range(num_chunks))
    assert len(flat) == len(set(flat))


def test_plan_round_trips_through_json() -> None:
    plan = _plan()
    assert JobPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    "kwargs",
    [{"labels": ()}, {"labels": (1, 1)}, {"per_label": 0}, {"chunk_size": 0}],
)
def test_bad_plans_are_refused(kwargs: dict[str, object]) -> None:
    base = {"labels": (0,), "per_label": 1, "chunk_size": 1}
    with pytest.raises(ValueError):
        _plan(**{**base, **kwargs})  # type: ignore[arg-type]


def test_shard_defaults_come_from_an_indexed_job_environment() -> None:
    assert shard_from_environment({}) == (0, 1)
    assert shard_from_environment({"JOB_COMPLETION_INDEX": "2", "CVAE_SHARD_COUNT": "3"}) == (2, 3)
    with pytest.raises(ValueError, match="shard index"):
        shard_from_environment({"JOB_COMPLETION_INDEX": "3", "CVAE_SHARD_COUNT": "3"})
    with pytest.raises(ValueError, match="integers"):
        shard_from_environment({"JOB_COMPLETION_INDEX": "x"})
