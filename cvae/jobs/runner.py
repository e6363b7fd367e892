"""Run `cvae generate`: fetch the missing chunks of a shard through GenerateStream, then publish."""

from __future__ import annotations

import concurrent.futures as futures
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvae.client import Client, ModelInfo, RetryPolicy, TlsConfig
from cvae.jobs.assemble import assemble
from cvae.jobs.atomic import OutputError
from cvae.jobs.plan import JobPlan, check_shard
from cvae.jobs.readers import manifest_path, read_manifest
from cvae.jobs.workdir import WorkDir, adopt_plan, chunk_sources

_LOGGER = logging.getLogger(__name__)
JOB_RETRY = RetryPolicy(max_attempts=8, initial_backoff_s=0.2, max_backoff_s=10.0)


@dataclass(frozen=True)
class GenerateJob:
    """One `cvae generate` invocation."""

    server: str
    out: Path
    per_label: int
    seed: int
    labels: tuple[int, ...] | None = None
    """None: every class the model knows."""
    dataset_format: str = "npz"
    temperature: float = 1.0
    chunk_size: int = 1000
    """Images per chunk: the unit of seeding, resume and sharding (part of the dataset)."""
    stream_chunk_size: int = 0
    """Images per GenerateStream message (0: the server's default)."""
    model_version: str | None = None
    model: str = ""
    """The model to draw from, on a server with several (empty: the server's default)."""
    shard_index: int = 0
    shard_count: int = 1
    concurrency: int = 2
    timeout_s: float = 120.0
    """Deadline of each chunk's stream, retries included."""
    progress: bool = True
    tls: TlsConfig | None = None


def work_dir_for(job: GenerateJob) -> WorkDir:
    """A sharded run writes its chunks at --out (merged later); a whole run next to it."""
    if job.shard_count > 1:
        return WorkDir(job.out)
    return WorkDir(job.out.with_name(job.out.name + ".partial"))


def _already_complete(job: GenerateJob) -> bool:
    if not manifest_path(job.out, job.dataset_format).is_file():
        return False
    manifest = read_manifest(job.out, job.dataset_format)
    same = (
        manifest["seed"] == job.seed
        and manifest["per_label"] == job.per_label
        and manifest["temperature"] == job.temperature
        and manifest["chunk_size"] == job.chunk_size
        and manifest["dataset_format"] == job.dataset_format
        and (job.labels is None or tuple(manifest["labels"]) == job.labels)
        and (job.model_version is None or manifest["model"]["version"] == job.model_version)
    )
    if not same:
        raise OutputError(
            f"{job.out} already holds another dataset; remove it or choose another --out"
        )
    return True


def validate_labels(labels: Sequence[int] | None, info: ModelInfo) -> tuple[int, ...]:
    if labels is None:
        return tuple(range(info.num_classes))
    unknown = [label for label in labels if not 0 <= label < info.num_classes]
    if unknown:
        raise ValueError(
            f"unknown label(s) {unknown}: model {info.name} version {info.version} "
            f"knows labels 0..{info.num_classes - 1}"
        )
    return tuple(labels)


def fetch_chunk(client: Client, plan: JobPlan, chunk_index: int, job: GenerateJob) -> np.ndarray:
    """All images of one chunk, uint8 [n, H, W], checked against the plan."""
    labels = plan.chunk_labels(chunk_index)
    images = np.empty((labels.shape[0], *plan.image_shape), dtype=np.uint8)
    filled = 0
    for result in client.stream(
        labels,
        seed=plan.chunk_seed(chunk_index),
        temperature=plan.temperature,
        model_version=plan.model_version,
        chunk_size=job.stream_chunk_size,
        omit_latents=True,
        timeout_s=job.timeout_s,
    ):
        stop = result.offset + len(result)
        if result.model_version != plan.model_version:
            raise RuntimeError(f"server answered with model version {result.model_version}")
        if not np.array_equal(result.labels, labels[result.offset : stop]):
            raise RuntimeError(f"chunk {chunk_index}: server returned other labels")
        images[result.offset : stop] = result.images
        filled += len(result)
    if filled != labels.shape[0]:
        raise RuntimeError(f"chunk {chunk_index}: got {filled} of {labels.shape[0]} images")
    return images


def _fetch_missing(client: Client, plan: JobPlan, work: WorkDir, job: GenerateJob) -> None:
    mine = plan.shard_chunks(job.shard_index, job.shard_count)
    done = work.completed()
    todo = [k for k in mine if k not in done]
    total = sum(plan.chunk_length(k) for k in mine)
    already = total - sum(plan.chunk_length(k) for k in todo)
    if already:
        _LOGGER.info("resuming: %d of %d chunks already on disk", len(mine) - len(todo), len(mine))
    bar = tqdm(total=total, initial=already, unit="img", disable=not job.progress)
    with bar, futures.ThreadPoolExecutor(max_workers=job.concurrency) as pool:
        pending: dict[futures.Future[np.ndarray], int] = {}
        queue = iter(todo)
        try:
            while True:
                while len(pending) < job.concurrency and (k := next(queue, None)) is not None:
                    pending[pool.submit(fetch_chunk, client, plan, k, job)] = k
                if not pending:
                    break
                finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for future in finished:
                    chunk_index = pending.pop(future)
                    images = future.result()
                    try:
                        work.save_chunk(chunk_index, images)
                    except OSError as error:
                        raise OutputError(
                            f"cannot write {work.chunk_path(chunk_index)}: {error.strerror}"
                        ) from error
                    bar.update(images.shape[0])
        finally:
            for future in pending:
                future.cancel()


def run(job: GenerateJob) -> Path:
    """Generate (or resume) the job; returns the dataset path, or the shard folder when sharded."""
    check_shard(job.shard_index, job.shard_count)
    if job.shard_count == 1 and _already_complete(job):
        _LOGGER.info("%s is already complete", job.out)
        # A run killed after placing the dataset but before deleting its chunks left them.
        shutil.rmtree(work_dir_for(job).path, ignore_errors=True)
        return job.out
    if job.shard_count == 1 and job.out.exists() and not work_dir_for(job).exists():
        raise OutputError(f"{job.out} already exists; remove it or choose another --out")
    work = work_dir_for(job)
    if job.shard_count > 1 and job.out.is_dir() and any(job.out.iterdir()) and not work.exists():
        raise OutputError(f"{job.out} is not empty and holds no shard; choose another --out")
    work.create()  # fails fast on an unwritable place, before any network call
    existing: JobPlan | None = None
    try:
        existing = work.load_plan()
        version = job.model_version or (existing.model_version if existing else None)
        with Client(
            job.server, timeout_s=job.timeout_s, retry=JOB_RETRY, tls=job.tls, model=job.model
        ) as client:
            info = client.model_info(version, timeout_s=min(job.timeout_s, 30.0))
            requested = JobPlan(
                labels=validate_labels(job.labels, info),
                per_label=job.per_label,
                seed=job.seed,
                temperature=job.temperature,
                chunk_size=job.chunk_size,
                model_name=info.name,
                model_version=info.version,
                image_shape=info.image_shape,
            )
            plan = adopt_plan(work, requested, job.model_version)
            _fetch_missing(client, plan, work, job)
    except BaseException:
        if not work.completed() and existing is None:
            shutil.rmtree(work.path, ignore_errors=True)  # nothing worth keeping for a resume
        raise
    if job.shard_count > 1:
        work.write_shard_record(plan, job.shard_index, job.shard_count, job.dataset_format)
        _LOGGER.info("shard %d/%d complete in %s", job.shard_index, job.shard_count, job.out)
        return job.out
    assemble(plan, chunk_sources([work], plan), job.out, job.dataset_format)
    shutil.rmtree(work.path)
    _LOGGER.info("wrote %d images to %s", plan.num_images, job.out)
    return job.out
