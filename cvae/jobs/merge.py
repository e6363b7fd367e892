"""`cvae generate merge`: join the shard folders of an Indexed Job into the unsharded dataset."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cvae.jobs.assemble import assemble
from cvae.jobs.atomic import OutputError, sha256_file
from cvae.jobs.plan import JobPlan
from cvae.jobs.workdir import WorkDir, chunk_sources

_LOGGER = logging.getLogger(__name__)


def merge(shard_dirs: Sequence[Path], out: Path, dataset_format: str | None = None) -> Path:
    """Check the shards are complete parts of one job, then write it as one dataset at `out`.

    The result is byte-identical to the same job run unsharded: both assemble the same chunks.
    """
    if not shard_dirs:
        raise ValueError("merge needs at least one shard folder")
    works = [WorkDir(Path(folder)) for folder in shard_dirs]
    plans: list[JobPlan] = []
    formats: set[str] = set()
    counts: set[int] = set()
    for work in works:
        plan = work.load_plan()
        record = work.read_shard_record()
        if plan is None or record is None:
            raise ValueError(f"{work.path} is not a finished shard (no plan.json or shard.json)")
        for key, digest in record["chunks"].items():
            if sha256_file(work.chunk_path(int(key))) != digest:
                raise ValueError(f"{work.chunk_path(int(key))} does not match its shard.json")
        plans.append(plan)
        formats.add(record["format"])
        counts.add(int(record["shard_count"]))
    if any(plan != plans[0] for plan in plans):
        raise ValueError("the shards come from different jobs (their plan.json files differ)")
    if counts != {len(works)}:
        raise ValueError(f"expected {sorted(counts)} shards, got {len(works)}")
    chosen = dataset_format
    if chosen is None and len(formats) == 1:
        chosen = next(iter(formats))
    if chosen is None:
        raise ValueError(f"the shards ask for formats {sorted(formats)}; pass --format")
    owners = chunk_sources(works, plans[0])
    if out.exists():
        raise OutputError(f"{out} already exists; remove it or choose another --out")
    assemble(plans[0], owners, out, chosen)
    _LOGGER.info("merged %d shards, %d images into %s", len(works), plans[0].num_images, out)
    return out
